"""The daemon with real processes and short intervals (--tick-interval 1, every-second jobs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from daemon_harness import DaemonProc, finished, kill_leftovers, pid_alive, runs
from conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def daemons(home):
    started: list[DaemonProc] = []

    def start(*args: str, **kw) -> DaemonProc:
        d = DaemonProc(home, *args, log_name=f"daemon{len(started)}.log", **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    kill_leftovers(home)


def add(cli, name: str, schedule: str, *command: str, **opts: str) -> None:
    args = ["add", name, "--schedule", schedule]
    for key, value in opts.items():
        args += [f"--{key.replace('_', '-')}", value]
    r = cli(*args, "--", *command)
    assert r.returncode == 0, r.stderr


def test_slow_job_never_delays_ticks_or_other_jobs(cli, home, daemons):
    """The seed's scenario: a job that sleeps 5 s beside an every-second job."""
    add(cli, "slow", "every 2s", "sleep", "5")
    add(cli, "fast", "every 1s", "true")
    d = daemons()
    d.wait_started()
    t0 = time.time()
    ticks = d.wait_event("tick", timeout=20, count=8, counted=True)
    fast = wait_for(lambda: [r for r in finished(home, "fast") if r.scheduled >= t0][5:] and
                    [r for r in finished(home, "fast") if r.scheduled >= t0], 10, what="five every-second runs")
    slots = [r.scheduled for r in fast]
    assert all(b - a == 1.0 for a, b in zip(slots, slots[1:])), f"a slot was lost: {slots}"
    lateness = [r.started_at - r.scheduled for r in fast]
    assert max(lateness) < 0.25, lateness
    # The ticks keep their spacing beside the 5 s job (a tick held behind it would be seconds late);
    # the first one, at start, falls where the daemon started, not on a boundary.
    gaps = [b["horizon"] - a["horizon"] for a, b in zip(ticks[1:], ticks[2:])]
    assert all(abs(g - 1.0) < 0.5 for g in gaps), gaps
    slow = runs(home, "slow")
    assert any(r.outcome == "skipped" for r in slow), "the overlapping slot is recorded as skipped"
    assert d.stop() == 0


def test_tick_lock_is_free_while_jobs_run(cli, home, daemons, tmp_path):
    filelock = pytest.importorskip("filelock")
    add(cli, "long", "every 1s", "sleep", "30")
    d = daemons()
    d.wait_event("job.started", timeout=10)
    t0 = time.monotonic()
    with filelock.FileLock(home.tick_lock, timeout=1.0):
        took = time.monotonic() - t0
    assert took < 1.0
    d.wait_event("tick", count=3, counted=True)
    assert len([r for r in runs(home, "long") if r.state != "done"]) == 1, "one run in flight, the rest skipped"
    assert d.stop() == 0


def test_one_shot_lasting_three_seconds_runs_once(cli, home, daemons):
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 3)) + "Z"
    add(cli, "once", f"at {at}", "sleep", "3")
    d = daemons()
    d.wait_event("job.finished", timeout=15, job="once")
    d.wait_event("tick", count=3, counted=True)
    got = runs(home, "once")
    assert len(got) == 1 and got[0].outcome == "succeeded"
    shown = json.loads(cli("show", "once", "--json").stdout)
    assert shown["state"] == "completed" and shown["next_run"] is None
    assert d.stop() == 0


def _tick_loop(root: str, seconds: float) -> None:
    from hermes_cron import tick
    from hermes_cron.contract.logs import Silent

    end = time.time() + seconds
    while time.time() < end:
        tick(root, log=Silent())
        time.sleep(0.05)


def test_several_tickers_never_double_dispatch(cli, home, daemons):
    add(cli, "a", "every 1s", "true")
    add(cli, "b", "* * * * * *", "true")
    d = daemons()
    d.wait_started()
    others = [subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                                f"from test_daemon import _tick_loop; _tick_loop({home.root!r}, 5)"])
              for _ in range(2)]
    for p in others:
        assert p.wait(30) == 0
    time.sleep(1.5)
    assert d.stop() == 0
    cli("list")  # records results that finished unwatched
    for job in ("a", "b"):
        got = [r for r in runs(home, job) if r.outcome not in ("skipped", "missed")]
        slots = [r.scheduled for r in got]
        assert len(slots) == len(set(slots)), f"{job}: a slot ran twice"
        assert len(slots) >= 5


def test_kill9_mid_run_then_new_daemon_records_the_real_exit_code(cli, home, daemons):
    add(cli, "job", "every 1h", "sh", "-c", "sleep 2; exit 3")
    d = daemons()
    d.wait_started()
    assert cli("trigger", "job").returncode == 0
    d.wait_event("job.started", job="job")
    # the start is logged at once and written at the daemon's next idle moment: wait for it
    wait_for(lambda: runs(home, "job")[-1].state == "running", 10, what="the start recorded")
    d.kill9()
    run = runs(home, "job")[-1]
    assert run.state == "running"
    d2 = daemons()
    d2.wait_event("job.adopted", job="job")
    d2.wait_event("job.finished", job="job", timeout=10)
    run = runs(home, "job")[-1]
    assert (run.outcome, run.exit_code) == ("failed", 3)
    assert d2.stop() == 0


def test_sigterm_with_a_job_running_exits_0_fast_and_leaves_the_job(cli, home, daemons):
    add(cli, "long", "every 1h", "sleep", "20")
    d = daemons()
    d.wait_started()
    cli("trigger", "long", check=True)
    d.wait_event("job.started", job="long")
    job_pid = wait_for(lambda: runs(home, "long")[-1].supervisor_pid, what="supervisor pid")
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 2
    assert pid_alive(job_pid), "the run goes on without the daemon"
    assert not os.path.exists(home.pidfile)


def test_second_daemon_exits_at_once_naming_the_first(home, daemons):
    d = daemons()
    d.wait_started()
    second = subprocess.run([sys.executable, "-m", "hermes_cron", "run"], capture_output=True, text=True,
                            env={**os.environ, "HERMES_HOME": home.root}, timeout=20)
    assert second.returncode != 0
    assert f"pid {d.pid}" in second.stderr and "already running" in second.stderr
    assert d.stop() == 0


def test_injected_exception_is_logged_with_traceback_and_ticking_goes_on(cli, home, daemons):
    add(cli, "fast", "every 1s", "true")
    d = daemons(faults="tick.locked=raise@3")
    failed = d.wait_event("tick.failed")[0]
    assert failed["level"] == "error" and "Traceback" in failed["exception"]
    assert "injected fault" in failed["exception"]
    wait_for(lambda: [e for e in d.events("job.started") if e["timestamp"] > failed["timestamp"]], 10,
             what="jobs to run again after the failed tick")
    assert d.stop() == 0


def test_corrupted_store_is_left_alone_while_the_daemon_ticks_and_reports(cli, home, daemons):
    add(cli, "fast", "every 1s", "true")
    d = daemons("--heartbeat-every", "1")
    d.wait_started()
    with open(home.jobs, "w") as f:
        f.write('{"version": 1, "jobs": [')
    before = open(home.jobs).read()
    d.wait_event("tick.failed", count=3)
    hb = json.load(open(home.heartbeat))
    assert hb["last_error"] and "truncated" in hb["last_error"]["message"]
    assert hb["consecutive_failures"] >= 1 and hb["last_ok_tick"] < hb["time"]
    assert open(home.jobs).read() == before
    assert d.proc.poll() is None
    os.remove(home.jobs)  # an empty store is valid: the daemon recovers
    wait_for(lambda: json.load(open(home.heartbeat))["consecutive_failures"] == 0, 10, what="recovery")
    assert d.stop() == 0


def test_interval_job_lasting_40_percent_of_its_period_does_not_drift(cli, home, daemons):
    add(cli, "steady", "every 2s", "sleep", "0.8")
    d = daemons()
    d.wait_event("job.finished", count=4, timeout=20, job="steady")
    got = finished(home, "steady")
    slots = [r.scheduled for r in got]
    assert all(b - a == 2.0 for a, b in zip(slots, slots[1:])), slots
    assert all(r.started_at - r.scheduled < 0.25 for r in got)
    assert d.stop() == 0


def test_sighup_reopens_the_log_file(cli, home, daemons):
    d = daemons()
    d.wait_started()
    rotated = d.log_path + ".1"
    os.rename(d.log_path, rotated)
    d.signal(signal.SIGHUP)
    wait_for(lambda: os.path.exists(d.log_path), what="a new log file")
    d.wait_event("logs.reopened")
    assert d.stop() == 0


CLOCK_STEP_SCRIPT = """
import sys, time
from hermes_cron.engine.system import System
from hermes_cron.engine.daemon import Daemon, Settings
from hermes_cron.contract.logs import configure, get_logger
from hermes_cron.contract.paths import Home

class SteppingClock(System):
    # the wall clock steps back an hour two seconds in
    start = time.monotonic()
    def time(self):
        return time.time() - (3600 if time.monotonic() - self.start > 2 else 0)

configure("json", sys.argv[2], "info")
Daemon(Home(sys.argv[1]), Settings(tick_interval=0.5, heartbeat_every=1), get_logger(), system=SteppingClock()).run()
"""


def test_a_wall_clock_step_back_does_not_stop_the_ticks(home, tmp_path):
    log = tmp_path / "stepping.log"
    proc = subprocess.Popen([sys.executable, "-c", CLOCK_STEP_SCRIPT, home.root, str(log)])
    try:
        wait_for(lambda: "clock.stepped_back" in (log.read_text() if log.exists() else ""), 10,
                 what="the step back to be noticed")
        ticks = json.load(open(home.heartbeat))["ticks"]
        wait_for(lambda: json.load(open(home.heartbeat))["ticks"] >= ticks + 4, 5, what="ticks after the step")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_a_supervisor_crash_is_logged_with_its_traceback_and_recorded_on_the_run(cli, home, daemons):
    add(cli, "job", "every 1h", "true")
    d = daemons(faults="supervisor.start=raise")
    d.wait_started()
    cli("trigger", "job", check=True)
    crashed = d.wait_event("supervisor.crashed", 10)[0]
    assert crashed["job"] == "job" and "Traceback" in crashed["traceback"]
    assert "RuntimeError: injected fault at supervisor.start" in crashed["traceback"]
    run = wait_for(lambda: [r for r in runs(home, "job") if r.state == "done"], 10, what="the run recorded")[0]
    assert run.outcome == "interrupted" and "supervisor crashed (RuntimeError: injected fault" in run.reason
    assert not d.events("tick.failed") and d.proc.poll() is None
