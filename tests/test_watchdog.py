"""The watchdog with real daemons, real signals and short intervals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import cli_env, wait_for
from daemon_harness import kill_leftovers, pid_alive, read_events, runs

pytestmark = pytest.mark.slow

DAEMON = ["--tick-interval", "0.5", "--heartbeat-every", "1"]


class Dog:
    def __init__(self, home, *args: str, **env: str):
        self.log = os.path.join(os.path.dirname(home.root), "watchdog.log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hermes_cron_watchdog", "--log-format", "json", "--log-file", self.log,
             "--log-level", "debug", "--check-every", "0.2", "--backoff", "0.3", *args],
            env=cli_env(home, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def events(self, name: str) -> list[dict]:
        return read_events(self.log, name)

    def wait(self, name: str, timeout: float = 15, count: int = 1) -> list[dict]:
        return wait_for(lambda: len(self.events(name)) >= count and self.events(name), timeout,
                        what=f"watchdog event {name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def dogs(home, cli):
    made: list[Dog] = []

    def make(*args: str, **env: str) -> Dog:
        d = Dog(home, *args, **env)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    cli("stop", "--timeout", "2")
    kill_leftovers(home)


def daemon_pid(home) -> int | None:
    try:
        return int(open(home.pidfile).readline())
    except (OSError, ValueError):
        return None


def heartbeat(home) -> dict:
    try:
        return json.load(open(home.heartbeat))
    except (OSError, ValueError):
        return {}


def test_frozen_daemon_is_replaced_and_its_running_job_adopted(cli, home, dogs):
    cli("add", "long", "-s", "@yearly", "--", "sleep", "6", check=True)
    cli("start", *DAEMON, check=True)
    first = daemon_pid(home)
    cli("trigger", "long", check=True)
    run = wait_for(lambda: runs(home, "long") and runs(home, "long")[-1].supervisor_pid and runs(home, "long")[-1])
    dog = dogs("--stale-after", "2")
    dog.wait("watchdog.started_watching")
    t0 = time.monotonic()
    os.kill(first, signal.SIGSTOP)
    wait_for(lambda: heartbeat(home).get("pid") not in (None, first), 2 + 5, what="a new daemon's heartbeat")
    took = time.monotonic() - t0
    assert took < 2 + 4, took
    assert not pid_alive(first)
    stale = dog.events("watchdog.stale")[0]
    assert stale["daemon_pid"] == first and "ticks" in stale
    assert dog.events("watchdog.restart")
    new = daemon_pid(home)
    wait_for(lambda: heartbeat(home).get("ticks", 0) >= 3, 10, what="the new daemon to tick")
    assert pid_alive(run.supervisor_pid), "the job survived the daemon's replacement"
    wait_for(lambda: runs(home, "long")[-1].outcome == "succeeded", 15, what="the adopted run to be recorded")
    assert runs(home, "long")[-1].owner_pid == new


def test_killed_daemon_is_started_again(cli, home, dogs):
    cli("start", *DAEMON, check=True)
    first = daemon_pid(home)
    dog = dogs("--stale-after", "2")
    dog.wait("watchdog.started_watching")
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: heartbeat(home).get("pid") not in (None, first), 10, what="a new daemon")
    assert dog.events("watchdog.gone")
    assert cli("status").returncode == 0


def test_a_pidfile_naming_an_unrelated_process_is_never_signalled(cli, home, dogs):
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        home.ensure()
        ticks = open(f"/proc/{bystander.pid}/stat").read().rsplit(")", 1)[1].split()[19]
        with open(home.pidfile, "w") as f:
            f.write(f"{bystander.pid}\n" + json.dumps({"pid": bystander.pid, "pid_start": int(ticks),
                                                       "argv": [sys.executable, "-m", "hermes_cron", "--home",
                                                                home.root, "run", *DAEMON]}) + "\n")
        dog = dogs("--stale-after", "2")
        wait_for(lambda: heartbeat(home).get("pid") not in (None, bystander.pid), 10, what="a daemon")
        assert bystander.poll() is None, "the unrelated process was signalled"
        assert dog.events("watchdog.gone")
    finally:
        bystander.kill()
        bystander.wait()


def test_a_daemon_that_crashes_at_once_gets_backoff_then_giving_up(cli, home, dogs):
    cli("start", *DAEMON, check=True)
    first = daemon_pid(home)
    dog = dogs("--stale-after", "2", "--burst", "3", HERMES_CRON_FAULTS="daemon.start=exit")
    dog.wait("watchdog.started_watching")
    os.kill(first, signal.SIGKILL)
    giving_up = dog.wait("watchdog.giving_up", timeout=30)[0]
    assert giving_up["restarts"] == 3
    assert dog.events("watchdog.backoff"), "waits between restarts"
    # The state is saved at the end of the check that logged the event (written atomically):
    # read it once it says so, not the moment the event is seen (a loaded machine failed that).
    state = wait_for(lambda: (s := json.load(open(os.path.join(home.cron, ".watchdog.json"))))["restarts"]["giving_up"]
                     and s, timeout=10, what="the watchdog's saved state to say it gave up")
    assert state["restarts_in_window"] == 3
    time.sleep(1.5)
    assert len(dog.events("watchdog.restart")) == 3, "no storm after giving up"


def test_alive_but_failing_gets_one_restart_then_a_report(cli, home, dogs):
    cli("start", *DAEMON, check=True)
    dog = dogs("--stale-after", "1.5")
    dog.wait("watchdog.started_watching")
    with open(home.jobs, "w") as f:
        f.write("{corrupted")
    os.chmod(home.jobs, 0o600)
    report = dog.wait("watchdog.giving_up", timeout=30)[0]
    assert "failing" in report["reason"] or "restart won't fix" in report.get("note", "")
    time.sleep(2)
    assert len(dog.events("watchdog.restart")) == 1
    assert open(home.jobs).read() == "{corrupted"


def test_once_exit_codes(cli, home):
    once = [sys.executable, "-m", "hermes_cron_watchdog", "--once", "--stale-after", "1.5", "--log-format", "json"]
    run = lambda: subprocess.run(once, env=cli_env(home), capture_output=True, text=True).returncode  # noqa: E731
    assert run() == 1, "gone"
    cli("start", *DAEMON, check=True)
    wait_for(lambda: run() == 0, 10, what="healthy")
    pid = daemon_pid(home)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert run() == 0, "fresh heartbeat still"
        wait_for(lambda: run() == 2, 10, what="hung")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: run() == 0, 10, what="healthy again")
    with open(home.jobs, "w") as f:
        f.write("[")
    os.chmod(home.jobs, 0o600)
    wait_for(lambda: run() == 3, 10, what="failing")
    os.remove(home.jobs)
    wait_for(lambda: run() == 0, 10, what="healthy again")
    cli("stop", check=True)
    assert run() == 1
