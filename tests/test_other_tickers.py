"""Another ticker on the same home (the Hermes agent's `hermes cron tick`, which holds
`.tick.lock` while its jobs run; a build of Hermes writing its own heartbeat under our name):
contention and a foreign file are reported for what they are, never taken for a hang or a
failure, and nothing is restarted for them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import cli_env, wait_for
from daemon_harness import finished
from test_daemon import add, daemons  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)  # Hermes's way: its own mode
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def watchdog_once(home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hermes_cron_watchdog", "--once", "--log-format", "json"],
                          env=cli_env(home), capture_output=True, text=True, timeout=60)


def test_a_tick_lock_held_by_another_ticker_is_contention(cli, home, daemons):
    add(cli, "fast", "every 1s", "true")
    d = daemons("--heartbeat-every", "1")
    d.wait_started()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, home.tick_lock], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = d.wait_event("tick.lock_busy", 10)[0]
        assert busy["level"] == "warning" and busy["holder_pid"] == holder.pid
        assert "python" in busy["holder_command"]
        beat = wait_for(lambda: (hb := json.load(open(home.heartbeat))).get("lock_wait") and hb, 10,
                        what="the wait in the heartbeat")
        ticks = beat["ticks"]
        wait_for(lambda: json.load(open(home.heartbeat))["ticks"] >= ticks + 2, 10, what="the heartbeat to move on")
        assert not d.events("tick.failed"), "contention is not a failure"
        dog = watchdog_once(home)
        assert dog.returncode == 5, dog.stdout + dog.stderr
        assert f"held by pid {holder.pid}" in dog.stdout + dog.stderr
        # Past the stale threshold (2 x 1 s here) status turns unhealthy, saying why.
        status = wait_for(lambda: (r := cli("status", "--json")).returncode == 150 and json.loads(r.stdout), 10,
                          what="status to turn unhealthy")
        assert status["lock_wait"]["holder_pid"] == holder.pid
        assert f"held by pid {holder.pid}" in status["unhealthy_reason"]
        text = cli("status").stdout
        assert "tick lock:" in text and f"for pid {holder.pid}" in text
    finally:
        holder.kill()
        holder.wait()
    released = d.events("tick.lock_busy")[-1]["timestamp"]
    wait_for(lambda: [e for e in d.events("job.started") if e["timestamp"] > released], 10,
             what="a job to start after the lock was released")
    wait_for(lambda: json.load(open(home.heartbeat)).get("lock_wait") is None, 10, what="the wait to end")
    wait_for(lambda: cli("status").returncode == 0, 10, what="status healthy again")
    assert [r for r in finished(home, "fast") if r.outcome == "succeeded"]
    assert d.proc.poll() is None and d.stop() == 0


def test_a_heartbeat_written_by_another_ticker_is_named(cli, home, daemons):
    add(cli, "job", "every 1h", "true")
    d = daemons("--heartbeat-every", "1000")  # ours is written at start, then not for a long while
    d.wait_started()
    with open(home.heartbeat, "w") as f:
        f.write("1795000000.5 4242\n")  # a bare epoch and a pid, as a Hermes build writes it
    dog = watchdog_once(home)
    assert dog.returncode == 6, dog.stdout + dog.stderr
    assert "written by another ticker (pid 4242)" in dog.stdout + dog.stderr
    r = cli("status", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 150 and report["heartbeat_foreign"]["pid"] == 4242
    assert "another ticker" in report["unhealthy_reason"]
    assert "written by another ticker (pid 4242)" in cli("status").stdout
    assert d.stop() == 0
