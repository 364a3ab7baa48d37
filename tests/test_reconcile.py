"""Reconciling schedule rows with the job definitions (logic/reconcile.py), as pure logic: where
a new, rescheduled or resumed job starts."""

from __future__ import annotations

from hermes_cron.logic.jobs import Job
from hermes_cron.logic.reconcile import CLAIMED_AHEAD, plan
from hermes_cron.logic.sched import SchedRow

NOW = 1_800_000_000.0  # a multiple of 4 s and of 60 s


def job(schedule: str, enabled: bool = True) -> Job:
    return Job(name="j", command=("true",), schedule=schedule, tz="UTC", enabled=enabled)


def row(old: Job, next_run: float | None, last_slot: float | None, enabled: bool = True) -> SchedRow:
    return SchedRow("j", old.fingerprint, enabled, old.kind, next_run, last_slot, False, "boot")


def first(rows: dict, new: Job, now: float) -> tuple[str, float | None]:
    changes, broken = plan(rows, {"j": new}, now, "boot")
    assert broken == []
    [change] = changes
    return change.kind, change.next_run


def test_a_reschedule_starts_after_a_slot_claimed_a_moment_ahead():
    """Chaos found it: a tick claimed 16:19:56 at :55.56 under `every 2s`; an edit to `*/4 * * * * *`
    at :55.8 gave the new schedule :56 again, and the job started twice in that second."""
    old, new = job("every 2s"), job("*/4 * * * * *")
    slot = NOW  # claimed, so the row's next run is the slot after it
    assert first({"j": row(old, slot + 2, slot)}, new, slot - 0.2) == ("reset", slot + 4)


def test_a_reschedule_starts_from_now_otherwise():
    old, new = job("every 2s"), job("*/4 * * * * *")
    assert first({"j": row(old, NOW + 2, NOW - 2)}, new, NOW - 0.2) == ("reset", NOW)
    assert first({"j": row(old, NOW + 2, None)}, new, NOW - 0.2) == ("reset", NOW)


def test_a_slot_far_ahead_means_the_clock_stepped_back_and_does_not_hold_the_job():
    old, new = job("every 2s"), job("*/4 * * * * *")
    stepped = NOW + CLAIMED_AHEAD + 4  # the last slot, from before the clock went back
    assert first({"j": row(old, stepped + 2, stepped)}, new, NOW - 0.2) == ("reset", NOW)


def test_a_resume_starts_after_a_slot_claimed_a_moment_ahead():
    """Paused between a claim and its slot (the claimed run is cancelled, recorded skipped) and
    resumed before the slot: the slot has had its account, the job goes on from the next one."""
    paused = job("* * * * *", enabled=False)
    assert first({"j": row(paused, NOW + 60, NOW, enabled=False)}, job("* * * * *"), NOW - 0.3) == ("enable", NOW + 60)
    assert first({"j": row(paused, NOW + 60, NOW - 60, enabled=False)}, job("* * * * *"), NOW - 0.3) == ("enable", NOW)
