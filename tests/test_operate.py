"""Operating the daemon as a user would: start, status, stop, restart, trigger, history, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import wait_for
from daemon_harness import kill_leftovers, pid_alive, runs

pytestmark = pytest.mark.slow

FAST = ["--tick-interval", "1", "--heartbeat-every", "1"]


@pytest.fixture(autouse=True)
def _cleanup(home, cli):
    yield
    cli("stop", "--timeout", "3")
    kill_leftovers(home)


def pidfile_pid(home) -> int:
    return int(open(home.pidfile).readline())


def test_start_status_stop(cli, home):
    r = cli("start", *FAST)
    assert r.returncode == 0, r.stderr
    assert "started (pid" in r.stdout
    pid = pidfile_pid(home)
    assert pid_alive(pid)
    info = json.loads(open(home.pidfile).read().splitlines()[1])
    assert info["pid"] == pid and info["pid_start"] and "run" in info["argv"]
    s = cli("status")
    assert s.returncode == 0, s.stdout + s.stderr
    assert "running" in s.stdout and str(pid) in s.stdout
    data = json.loads(cli("status", "--json").stdout)
    assert data["running"] and data["healthy"] and data["pid"] == pid and data["exit_code"] == 0
    assert data["heartbeat_age_s"] < data["heartbeat_stale_after_s"]
    r = cli("stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert not pid_alive(pid) and not os.path.exists(home.pidfile)
    s = cli("status")
    assert s.returncode == 3 and "not running" in s.stdout


def test_start_twice_and_stop_twice(cli, home):
    assert cli("start", *FAST).returncode == 0
    pid = pidfile_pid(home)
    r = cli("start", *FAST)
    assert r.returncode == 0 and "already running" in r.stdout and str(pid) in r.stdout
    assert cli("stop").returncode == 0
    r = cli("stop")
    assert r.returncode == 0 and "not running" in r.stdout


def test_start_fails_with_the_daemons_reason_on_a_corrupted_store(cli, home):
    home.ensure()
    with open(home.jobs, "w") as f:
        f.write("{not json")
    os.chmod(home.jobs, 0o600)
    r = cli("start", *FAST)
    assert r.returncode != 0
    assert "first tick failed" in r.stderr and "jobs.json" in r.stderr
    assert open(home.jobs).read() == "{not json"
    assert cli("status").returncode == 3, "no daemon left behind"


def test_start_fails_with_the_reason_on_an_unwritable_home(cli, tmp_path, home):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    r = cli("start", *FAST, HERMES_HOME=str(blocker / "home"))
    assert r.returncode != 0 and "can't create" in r.stderr


def test_stale_pidfile_of_an_unrelated_process_is_never_signalled(cli, home):
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        home.ensure()
        with open(home.pidfile, "w") as f:
            ticks = open(f"/proc/{bystander.pid}/stat").read().rsplit(")", 1)[1].split()[19]
            f.write(f"{bystander.pid}\n" + json.dumps({"pid": bystander.pid, "pid_start": int(ticks),
                                                       "argv": ["hermes-cron", "run"]}) + "\n")
        s = cli("status")
        assert s.returncode == 1 and "stale" in s.stdout
        r = cli("stop")
        assert r.returncode == 0 and "stale pidfile" in r.stdout and "sleep" in r.stdout
        assert not os.path.exists(home.pidfile)
        assert bystander.poll() is None, "the unrelated process was signalled"
        with open(home.pidfile, "w") as f:
            f.write(f"{bystander.pid}\n")  # a bare pid, as other tools write: never enough to signal
        r = cli("start", *FAST)
        assert r.returncode == 0, r.stderr
        assert bystander.poll() is None
        assert pidfile_pid(home) != bystander.pid
    finally:
        bystander.kill()
        bystander.wait()


def test_status_exit_codes(cli, home):
    assert cli("status").returncode == 3
    assert cli("start", *FAST).returncode == 0
    assert cli("status").returncode == 0
    pid = pidfile_pid(home)
    os.kill(pid, signal.SIGSTOP)
    try:
        r = wait_for(lambda: (p := cli("status")).returncode == 150 and p, 10, what="status to see the hang")
        assert "STALE" in r.stdout
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: cli("status").returncode == 0, 10, what="health again")
    with open(home.jobs, "w") as f:
        f.write("[")
    os.chmod(home.jobs, 0o600)
    r = wait_for(lambda: (p := cli("status")).returncode == 150 and p, 10, what="failing ticks")
    assert "last error" in r.stdout
    os.remove(home.jobs)
    wait_for(lambda: cli("status").returncode == 0, 10, what="health again")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid))
    assert cli("status").returncode == 1, "dead, pidfile left behind"


def test_restart_keeps_the_options(cli, home):
    assert cli("start", *FAST).returncode == 0
    first = pidfile_pid(home)
    r = cli("restart")
    assert r.returncode == 0, r.stderr
    second = pidfile_pid(home)
    assert second != first and not pid_alive(first)
    hb = json.load(open(home.heartbeat))
    assert hb["pid"] == second and hb["tick_interval"] == 1.0


def test_trigger_without_a_daemon_runs_here(cli, home):
    cli("add", "hello", "-s", "@yearly", "--", "sh", "-c", "echo hi; exit 7", check=True)
    r = cli("trigger", "hello")  # in the background: returns at once
    assert r.returncode == 0 and "started here, in the background" in r.stdout
    wait_for(lambda: "failed (exit 7)" in cli("history", "hello").stdout, 10, what="its result")
    r = cli("trigger", "hello", "--wait")  # in the foreground, with the job's exit status
    assert r.returncode == 7
    got = runs(home, "hello")
    assert [x.outcome for x in got] == ["failed", "failed"] and all(x.trigger == "manual" for x in got)
    assert cli("trigger", "nope").returncode == 3


def test_trigger_with_a_daemon_is_dispatched_at_once(cli, home):
    cli("add", "hello", "-s", "@yearly", "--", "sh", "-c", "echo hi", check=True)
    assert cli("start", "--tick-interval", "60").returncode == 0
    t0 = time.time()
    r = cli("trigger", "hello", "--wait")
    assert r.returncode == 0 and "succeeded" in r.stdout
    assert time.time() - t0 < 5, "not a minute later"
    run = runs(home, "hello")[-1]
    assert run.owner_pid == pidfile_pid(home)


def test_trigger_honours_the_overlap_policy(cli, home):
    cli("add", "long", "-s", "@yearly", "--", "sleep", "5", check=True)
    assert cli("start", *FAST).returncode == 0
    assert cli("trigger", "long").returncode == 0
    r = cli("trigger", "long", "--wait")
    assert r.returncode == 75 and "skipped" in r.stdout


def test_history_and_logs_after_several_runs(cli, home):
    cli("add", "ok", "-s", "@yearly", "--", "sh", "-c", "echo run-ok", check=True)
    cli("add", "bad", "-s", "@yearly", "--", "sh", "-c", "echo oops >&2; exit 3", check=True)
    cli("add", "hang", "-s", "@yearly", "--timeout", "1s", "--kill-grace", "1s", "--", "sleep", "30", check=True)
    for name in ("ok", "ok", "bad", "hang"):
        cli("trigger", name, "--wait")
    h = json.loads(cli("history", "ok", "--json").stdout)
    assert [x["status"] for x in h] == ["succeeded", "succeeded"] and h[0]["id"] > h[1]["id"]
    assert all(x["scheduled"] and x["started_at"] and x["duration_s"] is not None for x in h)
    bad = json.loads(cli("history", "bad", "--json").stdout)[0]
    assert bad["status"] == "failed" and bad["exit_code"] == 3
    hang = json.loads(cli("history", "hang", "--json").stdout)[0]
    assert hang["status"] == "timed_out" and hang["signal"] == signal.SIGTERM
    text = cli("history", "hang").stdout
    assert "timed_out" in text and "SCHEDULED" in text
    assert cli("logs", "ok").stdout == "run-ok\n"
    assert cli("logs", "bad").stdout == "oops\n"
    assert cli("logs", "ok", "--run", str(h[1]["id"])).stdout == "run-ok\n"
    assert cli("history", "ghost").returncode == 3


def test_logs_follow_streams_until_the_run_ends(cli, home):
    cli("add", "ticker", "-s", "@yearly", "--", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.4; done",
        check=True)
    assert cli("start", *FAST).returncode == 0
    cli("trigger", "ticker", check=True)
    wait_for(lambda: runs(home, "ticker") and runs(home, "ticker")[-1].state == "running")
    r = cli("logs", "ticker", "--follow", timeout=20)
    assert r.stdout == "line1\nline2\nline3\n"


def test_retention_keeps_the_last_k_runs(cli, home):
    cli("add", "many", "-s", "@yearly", "--keep-runs", "3", "--", "true", check=True)
    for _ in range(6):
        cli("trigger", "many", "--wait", check=True)
    got = runs(home, "many")
    assert len(got) == 3
    assert sorted(os.listdir(home.job_runs("many"))) == [f"{r.id:010d}" for r in got]


def test_stop_jobs_stops_running_jobs_too(cli, home):
    cli("add", "long", "-s", "@yearly", "--kill-grace", "1s", "--", "sleep", "60", check=True)
    assert cli("start", *FAST).returncode == 0
    cli("trigger", "long", check=True)
    wait_for(lambda: runs(home, "long")[-1].state == "running")
    r = cli("stop", "--jobs")
    assert r.returncode == 0 and "stopped 1 running job" in r.stdout
    run = runs(home, "long")[-1]
    assert run.outcome == "interrupted" and "stop --jobs" in run.reason


def test_jobs_outlive_a_plain_stop(cli, home):
    cli("add", "long", "-s", "@yearly", "--", "sleep", "60", check=True)
    assert cli("start", *FAST).returncode == 0
    cli("trigger", "long", check=True)
    run = wait_for(lambda: runs(home, "long")[-1].supervisor_pid and runs(home, "long")[-1])
    assert cli("stop").returncode == 0
    assert pid_alive(run.supervisor_pid)


def test_concurrent_starts_leave_one_daemon_and_both_succeed(cli, home):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: cli("start", *FAST), range(3)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    pids = {int(r.stdout.split("pid ")[1].rstrip(")\n")) for r in results}
    assert len(pids) == 1
