"""When the daemon wakes, and what it keeps ready (logic/wake.py): tick boundaries strictly one
after another; the spare supervisor (engine/spawn.py's Spare) kept only while a slot is near,
forked at the last wake before it, dismissed when nothing is due for long."""

from __future__ import annotations

import time

import psutil
import pytest

from conftest import wait_for
from daemon_harness import DaemonProc, kill_leftovers
from hermes_cron.logic.wake import LEAD, MAX_LEAD, spare_horizon, spare_wanted


def test_a_spare_is_wanted_near_a_slot_only():
    now, tick = 1_000_000.0, 60.0
    horizon = spare_horizon(tick)
    assert spare_wanted(now + 1, now, tick) is True
    assert spare_wanted(now + horizon, now, tick) is True
    assert spare_wanted(now + horizon + 1, now, tick) is None, "between the horizons: left as it is"
    assert spare_wanted(now + 2 * horizon + 1, now, tick) is False
    assert spare_wanted(None, now, tick) is False, "nothing due at all"
    assert spare_wanted(now - 5, now, tick) is True, "overdue"


def test_the_last_wake_before_a_slot_is_within_the_horizon():
    """The daemon wakes at least once a tick, a lead before each tick: the last wake before a
    slot's own wake (up to LEAD + MAX_LEAD ahead of it) is at most a tick and both leads ahead,
    so the spare is forked then, without a wake of its own."""
    for tick in (0.1, 1.0, 60.0, 3600.0):
        assert spare_horizon(tick) >= tick + LEAD + MAX_LEAD + LEAD


def children(pid: int) -> list[int]:
    return [c.pid for c in psutil.Process(pid).children()]


@pytest.mark.slow
def test_an_idle_daemon_holds_no_spare_and_forks_one_when_a_slot_comes_near(cli, home):
    later = time.gmtime(time.time() + 3 * 3600)  # 3 hours ahead: far from any tick of this test
    assert cli("add", "later", "--schedule", f"{later.tm_min} {later.tm_hour} * * *", "--tz", "UTC",
               "--", "true").returncode == 0
    d = DaemonProc(home)
    try:
        d.wait_started()
        d.wait_event("heartbeat", count=3)  # a few 1 s ticks and their idle moments
        assert children(d.pid) == [] and not d.events("spare.ready"), "no spare while nothing is near"
        assert cli("add", "soon", "--schedule", "every 1s", "--", "true").returncode == 0
        d.signal(10)  # SIGUSR1: the jobs changed
        d.wait_event("job.finished", count=2, job="soon")
        [ready, *_] = d.events("spare.ready")
        handed = d.events("job.handed", job="soon")
        assert any(h["supervisor_pid"] == ready["pid"] for h in handed), "a slot was handed to the spare"
        assert cli("remove", "soon").returncode == 0
        d.signal(10)
        wait_for(lambda: children(d.pid) == [], 15, what="the spare dismissed, the supervisors gone")
        assert d.events("spare.dismissed")
    finally:
        d.stop()
        kill_leftovers(home)


def test_the_next_tick_boundary_is_always_after_the_one_just_ticked():
    """Ticks at 0.1, 0.2 or 0.3 s intervals: a boundary times the interval can round back onto
    itself, and the daemon ticked one boundary over and over (a whole core)."""
    from hermes_cron.logic.wake import boundary_after

    for step in (0.1, 0.2, 0.3, 0.7, 1.0, 1.5, 60.0, 3600.0):
        for k in range(1_000_000, 1_000_000 + 2000):
            now = k * step + 1_795_000_000.0 // step * step  # boundaries as the loop computes them
            nxt = boundary_after(now, step)
            assert now < nxt <= now + step * 1.000001, (step, now, nxt)
            assert boundary_after(nxt, step) > nxt


@pytest.mark.slow
def test_a_daemon_ticking_every_fifth_of_a_second_ticks_five_times_a_second(home):
    d = DaemonProc(home, "--heartbeat-every", "1", tick=0.2)
    try:
        d.wait_started()
        first = len(d.events("heartbeat"))
        time.sleep(2.0)  # the span measured (a wait, not a condition: the count is what is checked)
        ticks = len(d.events("heartbeat")) - first
    finally:
        d.stop()
    assert 5 <= ticks <= 15, f"{ticks} ticks in 2 s at a 0.2 s interval"
