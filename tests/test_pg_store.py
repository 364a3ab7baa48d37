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
        cluster = nodes[1][1]("status", "--cluster")
        for i in range(3):
            assert f"node{i}  healthy, epoch" in cluster.stdout, cluster.stdout + cluster.stderr
        assert "clock +0.0" in cluster.stdout or "clock -0.0" in cluster.stdout
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


LONG = ('echo started >> {d}/starts; trap \'date +%s.%N > {d}/ended; exit 143\' TERM; '
        'sleep 120 & wait')


def run_row(url: str, job: str):
    rows = query(url, "SELECT id, state, status, node, epoch, supervisor_pid, job_pid, ended_at, reason "
                      "FROM hc_runs WHERE job = %s ORDER BY id DESC LIMIT 1", (job,))
    return rows[0] if rows else None


def start_long_run_on(node, url: str, tmp_path):
    """Node A's daemon alone, the long job triggered there and running."""
    home, cli = node
    assert cli("add", "long", "-s", "every 1h", "--", "sh", "-c", LONG.format(d=tmp_path)).returncode == 0
    d = DaemonProc(home, "--lease", "4", log_name="a.log", HERMES_CRON_STORE=url, HERMES_CRON_NODE="a")
    d.wait_started()
    r = subprocess.Popen([sys.executable, "-m", "hermes_cron", "--store", url, "trigger", "long"],
                         env=cli_env(home, HERMES_CRON_NODE="a"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r.wait(30)
    wait_for(lambda: (row := run_row(url, "long")) and row[1] == "running" and row, 20, what="the long run")
    return d


def test_a_dead_nodes_run_is_stopped_then_recorded_lost_by_a_peer(tmp_path, pg_url):
    a, b = hosts(tmp_path, pg_url, 2)
    assert a[1]("db", "init").returncode == 0
    d_a = start_long_run_on(a, pg_url, tmp_path)
    d_b = DaemonProc(b[0], "--lease", "4", log_name="b.log", HERMES_CRON_STORE=pg_url, HERMES_CRON_NODE="b")
    try:
        d_b.wait_started()
        d_a.kill9()  # the host's daemon dies; its supervisor and job go on, and nobody renews the lease
        row = wait_for(lambda: (r := run_row(pg_url, "long")) and r[2] == "lost" and r, 30,
                       what="the run recorded lost by the peer")
        assert row[3] == "a" and "stopped renewing" in row[8]
        ended = float((tmp_path / "ended").read_text())
        assert ended <= row[7], "the job was stopped before a peer settled its run"
        assert (tmp_path / "starts").read_text().count("started") == 1
        assert d_b.events("run.lost")
        assert d_b.stop() == 0
    finally:
        for d in (d_a, d_b):
            if d.proc.poll() is None:
                d.proc.kill()


def test_a_node_frozen_past_its_lease_fences_itself_when_it_wakes(tmp_path, pg_url):
    import signal

    a, b = hosts(tmp_path, pg_url, 2)
    assert a[1]("db", "init").returncode == 0
    d_a = start_long_run_on(a, pg_url, tmp_path)
    d_b = DaemonProc(b[0], "--lease", "4", log_name="b.log", HERMES_CRON_STORE=pg_url, HERMES_CRON_NODE="b")
    row = run_row(pg_url, "long")
    frozen = [d_a.pid, row[5]]
    try:
        d_b.wait_started()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        os.killpg(row[6], signal.SIGSTOP)
        lost = wait_for(lambda: (r := run_row(pg_url, "long")) and r[2] == "lost" and r, 30,
                        what="the frozen node's run recorded lost")
        assert not (tmp_path / "ended").exists()
        os.killpg(row[6], signal.SIGCONT)
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        # woken: its supervisor stops the job at once, its daemon finds itself fenced, then registers anew
        wait_for(lambda: (tmp_path / "ended").exists(), 10, what="the job stopped once the node woke")
        d_a.wait_event("node.fenced", 15)
        events = d_a.wait_event("node.registered", 15, count=2)
        assert events[-1]["epoch"] > lost[4]
        assert (tmp_path / "starts").read_text().count("started") == 1, "never started twice"
        assert d_a.stop() == 0 and d_b.stop() == 0
    finally:
        for d in (d_a, d_b):
            for pid in (d.pid,):
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
            if d.proc.poll() is None:
                d.proc.kill()


def test_an_edit_on_another_host_wakes_the_daemons(tmp_path, pg_url):
    """LISTEN/NOTIFY: with minute ticks, a job added on another host runs within seconds."""
    (a_home, a), (b_home, b) = hosts(tmp_path, pg_url, 2)
    assert a("db", "init").returncode == 0
    r = a("start", "--tick-interval", "60")  # in the background: its command line carries --store, not the env
    assert r.returncode == 0, r.stderr
    try:
        from hermes_cron.contract.pidfile import read_pidfile

        assert "--store" in read_pidfile(a_home.pidfile).argv
        t0 = time.time()
        assert b("add", "soon", "-s", "every 1s", "--", "true").returncode == 0
        wait_for(lambda: query(pg_url, "SELECT 1 FROM hc_runs WHERE job = 'soon' AND status = 'succeeded'"), 10,
                 what="the new job's first run, woken by NOTIFY")
        assert time.time() - t0 < 10
    finally:
        assert a("stop").returncode == 0


def test_a_lost_run_of_a_job_safe_to_repeat_runs_again_once_elsewhere(tmp_path, pg_url):
    a, b = hosts(tmp_path, pg_url, 2)
    assert a[1]("db", "init").returncode == 0
    assert a[1]("add", "again", "-s", "every 1h", "--on-lost", "rerun", "--", "sh", "-c",
                f'echo "$HERMES_CRON_NODE_NAME" >> {tmp_path}/ran; sleep 2').returncode == 0
    d_a = DaemonProc(a[0], "--lease", "4", log_name="a.log", HERMES_CRON_STORE=pg_url, HERMES_CRON_NODE="a",
                     HERMES_CRON_NODE_NAME="a")
    d_b = None
    try:
        d_a.wait_started()
        subprocess.run([sys.executable, "-m", "hermes_cron", "--store", pg_url, "trigger", "again"],
                       env=cli_env(a[0], HERMES_CRON_NODE="a"), capture_output=True, timeout=30)
        wait_for(lambda: (r := run_row(pg_url, "again")) and r[1] == "running", 20, what="the first attempt")
        d_a.kill9()
        d_b = DaemonProc(b[0], "--lease", "4", log_name="b.log", HERMES_CRON_STORE=pg_url, HERMES_CRON_NODE="b",
                         HERMES_CRON_NODE_NAME="b")
        d_b.wait_started()
        rows = wait_for(lambda: (r := query(pg_url, "SELECT attempt, status, node FROM hc_runs WHERE job = 'again' "
                                                    "ORDER BY id")) and len(r) == 2 and r[1][1] == "succeeded" and r,
                        30, what="the second attempt run by the peer")
        assert rows[0][:2] == (1, "lost") and rows[1] == (2, "succeeded", "b")
        assert (tmp_path / "ran").read_text().split() == ["a", "b"]
        assert d_b.stop() == 0
    finally:
        for d in (d_a, d_b):
            if d is not None and d.proc.poll() is None:
                d.proc.kill()


def test_a_node_cut_off_from_the_database_stops_its_run_and_fences_itself(tmp_path, pg_url):
    from urllib.parse import urlsplit

    from tcp_proxy import Proxy

    parts = urlsplit(pg_url)
    proxy = Proxy((parts.hostname, parts.port))
    via_proxy = pg_url.replace(f":{parts.port}/", f":{proxy.port}/")
    a, b = hosts(tmp_path, pg_url, 2)
    assert a[1]("db", "init").returncode == 0
    d_a = start_long_run_on((a[0], node_cli(a[0], via_proxy)), via_proxy, tmp_path)
    d_b = DaemonProc(b[0], "--lease", "4", log_name="b.log", HERMES_CRON_STORE=pg_url, HERMES_CRON_NODE="b")
    try:
        d_b.wait_started()
        first_epoch = run_row(pg_url, "long")[4]
        proxy.cut()
        lost = wait_for(lambda: (r := run_row(pg_url, "long")) and r[2] == "lost" and r, 30,
                        what="the cut-off node's run recorded lost by its peer")
        ended = float(wait_for(lambda: (tmp_path / "ended").exists() and (tmp_path / "ended").read_text(), 10,
                               what="the job stopped on the cut-off node"))
        assert ended <= lost[7], "the job was stopped before the peer settled its run"
        d_a.wait_event("store.unreachable", 10)
        status = subprocess.run([sys.executable, "-m", "hermes_cron", "--store", via_proxy, "status"],
                                capture_output=True, text=True, env=cli_env(a[0], HERMES_CRON_NODE="a"), timeout=60)
        assert "can't reach the store" in status.stdout + status.stderr
        proxy.restore()
        d_a.wait_event("node.fenced", 20)
        registered = d_a.wait_event("node.registered", 20, count=2)
        assert registered[-1]["epoch"] > first_epoch
        assert (tmp_path / "starts").read_text().count("started") == 1
        assert d_a.stop() == 0 and d_b.stop() == 0
    finally:
        proxy.close()
        for d in (d_a, d_b):
            if d.proc.poll() is None:
                d.proc.kill()


def test_a_postgresql_restart_loses_nothing_committed(tmp_path):
    import tempfile

    from pg_server import new_database, own_server, pg_ctl, stop

    root = tempfile.mkdtemp(prefix="hermes-cron-pg-own-")  # the server's user must reach it: not under tmp_path
    base = own_server(root)
    try:
        url = new_database(base)
        (home, cli), = hosts(tmp_path, url, 1)
        assert cli("db", "init").returncode == 0
        assert cli("add", "tick", "-s", "every 1s", "--", "true").returncode == 0
        d = DaemonProc(home, "--lease", "6", log_name="d.log", HERMES_CRON_STORE=url, HERMES_CRON_NODE="n")
        d.wait_started()
        wait_for(lambda: len(query(url, "SELECT 1 FROM hc_runs WHERE status = 'succeeded'")) >= 3, 15,
                 what="runs before the restart")
        before = query(url, "SELECT id, status FROM hc_runs WHERE state = 'done' ORDER BY id")
        r = pg_ctl("restart", "-m", "fast", root=root)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: len(query(url, "SELECT 1 FROM hc_runs WHERE status = 'succeeded'")) >= len(before) + 3, 30,
                 what="runs after the restart")
        after = dict(query(url, "SELECT id, status FROM hc_runs WHERE state = 'done'"))
        assert all(after.get(i) == s for i, s in before), "every run committed before the restart is still there"
        slots = sorted(s for (s,) in query(url, "SELECT scheduled FROM hc_runs WHERE job = 'tick'"))
        assert len(slots) == len(set(slots)), "no slot claimed twice across the restart"
        assert d.stop() == 0
    finally:
        stop(root)


def test_a_local_home_moves_into_the_shared_store_with_its_history(tmp_path, pg_url):
    (home, cli), = hosts(tmp_path, pg_url, 1)
    env = cli_env(home)

    def here(*args):
        return subprocess.run([sys.executable, "-m", "hermes_cron", *args], capture_output=True, text=True, env=env)

    assert here("add", "mine", "-s", "every 1h", "--", "echo", "hi").returncode == 0
    assert here("trigger", "mine", "--wait").returncode == 0
    assert cli("db", "init").returncode == 0
    r = cli("db", "import")
    assert r.returncode == 0 and "1 job(s) and 1 finished run(s)" in r.stdout, r.stdout + r.stderr
    assert "mine" in cli("list").stdout and "succeeded" in cli("history", "mine").stdout
    assert os.path.exists(home.jobs + ".imported") and not os.path.exists(home.jobs)
    r = cli("db", "import")
    assert r.returncode == 2 and "already imported" in r.stderr  # never copied twice
    assert len(query(pg_url, "SELECT 1 FROM hc_runs")) == 1
