"""hermes-cron and the Hermes agent share `$HERMES_HOME/cron`: no file or lock of ours may use a
name of Hermes's, and a job store that hermes-cron 0.1 kept under Hermes's `jobs.json` moves to
our own name once, losing nothing, while a Hermes `jobs.json` is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env
from hermes_cron.contract.access import OUR_NAMES
from hermes_cron.contract.paths import Home
from hermes_cron.store import jobstore
from hermes_cron.store.migrate import legacy_store_waiting, migrate, ours
from hermes_cron.store.sqlite import SqliteStore

# What hermes-agent 0.19 keeps in cron/ (cron/jobs.py, executions.py, scheduler.py, suggestions.py).
HERMES_NAMES = {"jobs.json", ".jobs.lock", "executions.db", "executions.db-wal", "executions.db-shm", "output",
                "ticker_heartbeat", "ticker_last_success", "suggestions.json", "catch_up_occurrences"}
SHARED_ON_PURPOSE = {".tick.lock"}  # one scheduler at a time

HERMES_JOBS = {"jobs": [{"id": "a1b2c3", "name": "backup", "prompt": "", "schedule": {"kind": "interval",
                                                                                       "minutes": 30},
                         "enabled": True, "state": "scheduled", "next_run_at": "2026-11-28T10:00:00+00:00"}],
               "updated_at": "2026-11-28T09:30:00+00:00"}


def test_none_of_our_names_is_hermess():
    home = Home("/h")
    ours_now = {os.path.basename(p) for p in (home.jobs, home.jobs_lock, home.state, home.tick_lock,
                                              home.daemon_lock, home.heartbeat, home.pidfile, home.stopped_marker,
                                              home.runs, home.hermes_record)} | set(OUR_NAMES)
    assert not (ours_now - SHARED_ON_PURPOSE) & HERMES_NAMES


def home_with_a_01_store(tmp_path) -> Home:
    """A home whose only store is an empty one of ours under jobs.json."""
    home = Home(str(tmp_path / "hermes"))
    home.ensure()
    with open(home.legacy_jobs, "w") as f:
        json.dump({"version": 1, "jobs": []}, f)
    os.chmod(home.legacy_jobs, 0o600)
    return home


def legacy_home(tmp_path, cli) -> Home:
    """A home as hermes-cron 0.1 left it: its store under cron/jobs.json, with history."""
    home = Home(str(tmp_path / "hermes"))
    assert cli("add", "j", "-s", "every 1h", "--", "true").returncode == 0
    assert cli("trigger", "j", "--wait").returncode == 0
    os.rename(home.jobs, home.legacy_jobs)
    return home


@pytest.mark.slow
def test_a_01_store_moves_to_our_name_once_with_its_jobs_and_history(tmp_path, cli):
    home = legacy_home(tmp_path, cli)
    before = open(home.legacy_jobs, "rb").read()
    r = cli("list")
    assert r.returncode == 0 and "j" in r.stdout
    assert "moved hermes-cron's job store from cron/jobs.json" in r.stderr
    assert open(home.jobs, "rb").read() == before and not os.path.exists(home.legacy_jobs)
    assert "moved" not in cli("list").stderr, "once"
    hist = cli("history", "j")
    assert hist.returncode == 0 and "succeeded" in hist.stdout


def test_a_hermes_jobs_file_is_never_touched(tmp_path):
    home = Home(str(tmp_path / "hermes"))
    home.ensure()
    data = json.dumps(HERMES_JOBS).encode()
    with open(home.legacy_jobs, "wb") as f:
        f.write(data)
    os.chmod(home.legacy_jobs, 0o600)
    assert not migrate(home)
    assert open(home.legacy_jobs, "rb").read() == data and not os.path.exists(home.jobs)
    assert jobstore.load(home).jobs == {}


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"jobs": []}', b'{"version": true, "jobs": []}', b"[1]"])
def test_a_jobs_file_that_is_not_ours_stays_where_it_is(tmp_path, content):
    home = Home(str(tmp_path / "hermes"))
    home.ensure()
    with open(home.legacy_jobs, "wb") as f:
        f.write(content)
    os.chmod(home.legacy_jobs, 0o600)
    assert not ours(content) and not migrate(home)
    assert open(home.legacy_jobs, "rb").read() == content


def test_the_move_keeps_the_schedule_state(tmp_path):
    """rename(2) keeps the inode: the schedule state's record of the file still matches, so the
    move costs no reconcile and changes no next run."""
    home = Home(str(tmp_path / "hermes"))
    from hermes_cron.app.jobs import add_job
    from hermes_cron.logic.jobs import Job

    add_job(home, Job(name="j", command=("true",), schedule="every 1h", tz="UTC"))
    store = SqliteStore(home)
    rows = store.sched_rows()
    with store.tick() as tx:
        sig = tx.reconcile_sig()
    store.close()
    os.rename(home.jobs, home.legacy_jobs)
    assert legacy_store_waiting(home) and migrate(home)
    assert jobstore.load(home).sig.text() == sig
    store = SqliteStore(home)
    assert store.sched_rows() == rows
    store.close()


def test_a_store_of_ours_under_our_name_wins_and_the_old_file_is_left(tmp_path):
    home = Home(str(tmp_path / "hermes"))
    home.ensure()
    for path in (home.jobs, home.legacy_jobs):
        with open(path, "w") as f:
            json.dump({"version": 1, "jobs": []}, f)
        os.chmod(path, 0o600)
    assert not legacy_store_waiting(home) and not migrate(home)
    assert os.path.exists(home.legacy_jobs)


@pytest.mark.slow
def test_racing_commands_move_it_exactly_once(tmp_path):
    home = home_with_a_01_store(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "hermes_cron", "list"], env=cli_env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("moved hermes-cron's job store" in err for _, err in outs) == 1
    assert os.path.exists(home.jobs) and not os.path.exists(home.legacy_jobs)


def test_a_library_tick_moves_it_too(tmp_path):
    home = home_with_a_01_store(tmp_path)
    from hermes_cron import tick
    from hermes_cron.contract.logs import Silent

    tick(home.root, log=Silent())
    assert os.path.exists(home.jobs) and not os.path.exists(home.legacy_jobs)
