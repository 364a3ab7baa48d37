"""The shared store on a real PostgreSQL server (started by the tests, tests/pg_server.py):
a versioned schema, jobs and history visible from every host, and several daemons ("hosts":
each its own home and node name) running each slot exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import cli_env, wait_for
from daemon_harness import DaemonProc
from hermes_cron.contract.paths import Home

pytestmark = pytest.mark.slow


def node_cli(home: Home, url: str):
    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hermes_cron", "--store", url, *args], capture_output=True,
                              text=True, env=cli_env(home, HERMES_CRON_NODE=os.path.basename(os.path.dirname(home.root)),
                                                     **env), timeout=60)
    return run


def hosts(tmp_path, url: str, count: int) -> list[tuple[Home, object]]:
    out = []
    for i in range(count):
        root = tmp_path / f"host{i}" / "hermes"
        root.parent.mkdir()
        home = Home(str(root))
        out.append((home, node_cli(home, url)))
    return out


def query(url: str, sql: str, params=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def test_schema_is_versioned_and_credentials_stay_out_of_urls(tmp_path, pg_url):
    [(home, cli)] = hosts(tmp_path, pg_url, 1)
    r = cli("list")
    assert r.returncode == 5 and "db init" in r.stderr
    assert "schema none" in cli("db", "status").stdout
    r = cli("db", "init")
    assert r.returncode == 0 and "created" in r.stdout, r.stderr
    assert "already there" in cli("db", "init").stdout
    assert cli("db", "migrate").returncode == 0
    assert cli("list").returncode == 0
    query(pg_url, "UPDATE hc_meta SET value = '99' WHERE key = 'schema_version'")
    r = cli("list")
    assert r.returncode == 5 and "newer than this hermes-cron knows" in r.stderr
    r = cli("db", "migrate")
    assert r.returncode == 5 and "nothing changed" in r.stderr
    secret = pg_url.replace("postgres@", "postgres:s3cret@")
    r = subprocess.run([sys.executable, "-m", "hermes_cron", "--store", secret, "list"], capture_output=True,
                       text=True, env=cli_env(home))
    assert r.returncode == 2 and "password" in r.stderr and "s3cret" not in r.stderr + r.stdout
    r = subprocess.run([sys.executable, "-m", "hermes_cron", "list"], capture_output=True, text=True,
                       env=cli_env(home, HERMES_CRON_STORE=secret))
    assert r.returncode == 2 and "password" in r.stderr


def test_jobs_and_history_are_seen_from_every_host(tmp_path, pg_url):
    (a_home, a), (b_home, b) = hosts(tmp_path, pg_url, 2)
    assert a("db", "init").returncode == 0
    r = a("add", "shared", "-s", "every 1h", "--", "sh", "-c", "echo from $HERMES_CRON_JOB")
    assert r.returncode == 0, r.stderr
    assert "shared" in b("list").stdout
    assert b("edit", "shared", "--timeout", "30s").returncode == 0
    assert "30s" in a("show", "shared").stdout
    r = b("trigger", "shared", "--wait")
    assert r.returncode == 0 and "succeeded" in r.stdout, r.stdout + r.stderr
    hist = a("history", "shared")
    assert "succeeded" in hist.stdout
    assert "from shared" in a("logs", "shared").stdout  # the capped copy in the database
    assert not os.path.exists(a_home.jobs) and not os.path.exists(a_home.state)  # nothing local but runs


def test_three_nodes_run_each_slot_exactly_once(tmp_path, pg_url):
    nodes = hosts(tmp_path, pg_url, 3)
    assert nodes[0][1]("db", "init").returncode == 0
    log = tmp_path / "starts"
    for i in range(4):
        r = nodes[0][1]("add", f"j{i}", "-s", "every 1s", "--", "sh", "-c",
                        f'echo "$HERMES_CRON_JOB $HERMES_CRON_SCHEDULED $HERMES_CRON_NODE_NAME" >> {log}')
        assert r.returncode == 0, r.stderr
    daemons = [DaemonProc(home, "--lease", "6", log_name=f"d{i}.log", HERMES_CRON_STORE=pg_url,
                          HERMES_CRON_NODE=f"node{i}", HERMES_CRON_NODE_NAME=f"node{i}")
               for i, (home, _) in enumerate(nodes)]
    try:
        for d in daemons:
            d.wait_started()
        t0 = time.time()
        wait_for(lambda: time.time() > t0 + 8, 20, what="eight seconds of slots")
        for d in daemons:
            assert d.stop() == 0
    finally:
        for d in daemons:
            if d.proc.poll() is None:
                d.proc.kill()
    starts = [line.split() for line in log.read_text().splitlines()]
    twice = [k for k, n in Counter((job, slot) for job, slot, *_ in starts).items() if n > 1]
    assert not twice, f"slots started twice: {twice}"
    assert len({node for *_, node in starts}) >= 2, "the work is shared between the nodes"
    rows = query(pg_url, "SELECT job, scheduled, status, node FROM hc_runs WHERE trigger = 'schedule'")
    for job in ("j0", "j1", "j2", "j3"):
        slots = sorted(s for j, s, *_ in rows if j == job)
        assert len(slots) >= 6
        gaps = [b - a for a, b in zip(slots, slots[1:])]
        assert all(abs(g - 1.0) < 1e-6 for g in gaps), f"{job}: every slot accounted for, once: {gaps}"
