"""The job store: atomic private writes, corrupted or unsafe files left alone, bounded lock
waits that tell contention from failure, and concurrent writers that lose nothing."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time

import pytest

from hermes_cron.store import jobstore
from hermes_cron.errors import LockBusy, LockFailed, StoreError
from hermes_cron.logic.jobs import Job
from hermes_cron.contract.locks import FileLock
from hermes_cron.contract.paths import Home
from hermes_cron.app.jobs import add_job

from conftest import cli_env, wait_for


def make_job(name: str, **kw) -> Job:
    return Job(name=name, command=("true",), schedule=kw.pop("schedule", "@daily"), tz="UTC", **kw)


def test_files_are_private_and_schema_versioned(home: Home):
    add_job(home, make_job("a"))
    assert stat.S_IMODE(os.stat(home.cron).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home.jobs).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home.state).st_mode) == 0o600
    doc = json.load(open(home.jobs))
    assert doc["version"] == jobstore.SCHEMA_VERSION and doc["jobs"][0]["name"] == "a"
    assert not [f for f in os.listdir(home.cron) if f.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("content, fragment", [
    (b'{"version": 1, "jobs": [{"name": "a", "comm', "is truncated"),
    (b"this is not json", "is not valid JSON"),
    (b"", "is truncated"),
    (b'{"version": 99, "jobs": []}', "newer hermes-cron"),
    (b'{"jobs": []}', "no valid schema version"),
    (b'{"version": true, "jobs": []}', "no valid schema version"),
    (b'[1, 2, 3]', "not a hermes-cron job store"),
])
def test_corrupted_store_is_refused_and_left_alone(home: Home, cli, content: bytes, fragment: str):
    home.ensure()
    with open(home.jobs, "wb") as f:
        f.write(content)
    os.chmod(home.jobs, 0o600)
    before = os.stat(home.jobs)
    for args in (["list"], ["add", "b", "-s", "@daily", "--", "true"], ["remove", "a"], ["show", "a"],
                 ["pause", "a"], ["list", "--json"]):
        proc = cli(*args)
        assert proc.returncode == 5, (args, proc.stderr)
        assert home.jobs in proc.stderr and fragment in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    after = os.stat(home.jobs)
    assert open(home.jobs, "rb").read() == content
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_store_writable_by_others_is_refused(home: Home, cli):
    add_job(home, make_job("a"))
    os.chmod(home.jobs, 0o664)
    proc = cli("list")
    assert proc.returncode == 5 and "writable by group or others" in proc.stderr
    proc = cli("add", "b", "-s", "@daily", "--", "true")
    assert proc.returncode == 5
    assert stat.S_IMODE(os.stat(home.jobs).st_mode) == 0o664
    assert [j["name"] for j in json.load(open(home.jobs))["jobs"]] == ["a"]


def test_unreadable_state_database_is_refused_and_left_alone(home: Home, cli):
    add_job(home, make_job("a"))
    with open(home.state, "r+b") as f:
        f.write(b"garbage" * 100)
    data = open(home.state, "rb").read()
    proc = cli("add", "b", "-s", "@daily", "--", "true")
    assert proc.returncode == 5 and home.state in proc.stderr
    assert open(home.state, "rb").read() == data
    assert [j["name"] for j in json.load(open(home.jobs))["jobs"]] == ["a"], "nothing written"


def test_missing_home_that_cant_be_created(tmp_path, cli, home: Home):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = cli("add", "a", "-s", "@daily", "--", "true", HERMES_HOME=str(blocker / "home"))
    assert proc.returncode == 8 and "can't create" in proc.stderr


def _hold_with_filelock(path: str, ready: str, seconds: float) -> None:
    import filelock

    with filelock.FileLock(path):
        open(ready, "w").close()
        time.sleep(seconds)


@pytest.mark.slow
def test_store_lock_contention_is_bounded_and_reported(home: Home, tmp_path):
    """A process using the `filelock` package holds the store lock: we wait, then say who holds it."""
    pytest.importorskip("filelock")
    home.ensure()
    ready = str(tmp_path / "ready")
    holder = multiprocessing.get_context("spawn").Process(
        target=_hold_with_filelock, args=(home.jobs_lock, ready, 5))
    holder.start()
    try:
        wait_for(lambda: os.path.exists(ready), what="the holder to take the lock")
        t0 = time.monotonic()
        with pytest.raises(LockBusy) as e:
            jobstore.mutate(home, lambda jobs: None, timeout=0.5)
        assert 0.4 < time.monotonic() - t0 < 3
        assert f"pid {holder.pid}" in str(e.value)
    finally:
        holder.join()


def test_lock_errors_are_not_mistaken_for_contention(tmp_path):
    # In a process of its own: a thread of this one (another test's server) may close a file
    # descriptor between filling the table and taking the lock.
    code = f"""
import os, resource
from hermes_cron.contract.locks import FileLock
from hermes_cron.errors import LockFailed
lock = FileLock({str(tmp_path / "x.lock")!r}, "a test lock")
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
while True:
    try:
        os.open("/dev/null", os.O_RDONLY)
    except OSError:
        break
try:
    lock.acquire(5)
except LockFailed as e:
    print(e.errno_name)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "EMFILE", (r.stdout, r.stderr)
    missing = FileLock(str(tmp_path / "no" / "such" / "dir" / "x.lock"), "a test lock")
    with pytest.raises(LockFailed) as e:
        missing.acquire(5)
    assert e.value.errno_name == "ENOENT"


def _add_many(root: str, prefix: str, n: int) -> None:
    home = Home(root)
    for i in range(n):
        add_job(home, make_job(f"{prefix}-{i}"))


@pytest.mark.slow
def test_four_processes_adding_fifty_jobs_each_keep_all_200(home: Home):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(home.root, f"p{k}", 50)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    names = {j["name"] for j in json.load(open(home.jobs))["jobs"]}
    assert len(names) == 200
    from hermes_cron.store.sqlite import SqliteStore

    state = SqliteStore(home)
    try:
        assert len(state.sched_rows()) == 200
    finally:
        state.close()


@pytest.mark.slow
def test_concurrent_cli_adds(home: Home):
    procs = [subprocess.Popen([sys.executable, "-m", "hermes_cron", "add", f"c{i}", "-s", "@hourly", "--", "true"],
                              env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(8)]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    assert len(json.load(open(home.jobs))["jobs"]) == 8


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_root_editing_a_users_store_keeps_its_owner_and_mode(world_venv: str, tmp_path):
    """root runs the CLI on a user's home: it acts as that user, so every file stays theirs."""
    import tempfile

    uid, gid = 65534, 65534
    root = tempfile.mkdtemp(prefix="hermes-cron-user-", dir="/tmp")
    try:
        home = Home(os.path.join(root, "home"))
        add_job(home, make_job("a"))
        for dirpath, dirnames, filenames in os.walk(root):
            os.chown(dirpath, uid, gid)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), uid, gid)
        os.chmod(home.jobs, 0o600)
        env = dict(os.environ, HERMES_HOME=home.root)
        for args in (["add", "b", "-s", "@daily", "--", "true"], ["pause", "a"], ["edit", "b", "--timeout", "5s"]):
            proc = subprocess.run([os.path.join(world_venv, "hermes-cron"), *args], env=env,
                                  capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
        for dirpath, dirnames, filenames in os.walk(home.root):
            for f in dirnames + filenames:
                st = os.stat(os.path.join(dirpath, f))
                assert (st.st_uid, st.st_gid) == (uid, gid), f
        assert stat.S_IMODE(os.stat(home.jobs).st_mode) == 0o600
        jobs = {j["name"]: j for j in json.load(open(home.jobs))["jobs"]}
        assert sorted(jobs) == ["a", "b"] and jobs["a"]["enabled"] is False and jobs["b"]["timeout"] == 5
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_a_schema_4_state_database_is_upgraded_in_place(home: Home):
    """5: the index of open runs holds their job and id; a schema-4 database keeps its runs and
    gets the new index (the old one dropped), and a tick reads the open runs from the index alone."""
    import sqlite3

    from hermes_cron.store.sqlite import SqliteStore
    from hermes_cron.store.sqlite_db import SCHEMA_VERSION

    add_job(home, make_job("a"))
    SqliteStore(home).close()
    conn = sqlite3.connect(home.state)
    conn.executescript("DROP INDEX runs_open_job; CREATE INDEX runs_open ON runs(state) WHERE state != 'done'; "
                       "INSERT INTO runs (job, trigger, scheduled, state, claimed_at) VALUES ('a', 'manual', 1, 'claimed', 1);"
                       "PRAGMA user_version=4;")
    conn.close()
    store = SqliteStore(home)
    store.close()
    conn = sqlite3.connect(home.state)
    try:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert "runs_open_job" in indexes and "runs_open" not in indexes
        plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN SELECT job, id FROM runs WHERE state != 'done'"))
        assert "COVERING INDEX runs_open_job" in plan or "USING INDEX runs_open_job" in plan
        assert conn.execute("SELECT job, state FROM runs").fetchall() == [("a", "claimed")]
    finally:
        conn.close()


def test_an_idle_checkpoint_waits_for_enough_writes_or_an_hour(home: Home, monkeypatch):
    """The daemon's idle housekeeping checkpoints the WAL once it has written CHECKPOINT_ROWS
    rows, or an hour after the last checkpoint if it wrote anything: an idle daemon's up-time row
    every heartbeat costs no flush (a checkpoint is two, and the next commit's new log header
    a third)."""
    from hermes_cron.contract.procinfo import ProcId
    from hermes_cron.store import sqlite as sq

    clock = [1000.0]
    monkeypatch.setattr(sq.time, "monotonic", lambda: clock[0])
    home.ensure()
    store = sq.SqliteStore(home, manual_checkpoints=True)
    calls = []
    monkeypatch.setattr(store.db, "checkpoint", lambda: calls.append(clock[0]))
    try:
        row = store.daemon_started("node", ProcId.me(), 1000.0)
        assert store.idle() is False
        assert calls == [], "one row: no checkpoint yet"
        for _ in range(3):
            store.daemon_seen(row, clock[0])
        clock[0] += sq.CHECKPOINT_EVERY - 1
        store.idle()
        assert calls == []
        clock[0] += 1
        assert store.idle() is True
        assert calls == [clock[0]], "an hour on: checkpointed"
        clock[0] += 2 * sq.CHECKPOINT_EVERY
        store.idle()
        assert len(calls) == 1, "nothing written since: nothing to checkpoint"
        for _ in range(sq.CHECKPOINT_ROWS):
            store.daemon_seen(row, clock[0])
        store.idle()
        assert len(calls) == 2, "enough written: checkpointed at once"
    finally:
        store.close()
