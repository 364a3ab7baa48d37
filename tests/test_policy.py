"""The misfire and overlap policies, decided from `now` passed in (no clock, no sleeping)."""

from __future__ import annotations

from hermes_cron.logic.policy import COUNT_CAP, backlog, decide
from hermes_cron.logic.schedule import parse_schedule

T0 = 1_800_000_000.0  # a minute boundary: 2027-01-15T08:00:00Z


def cron(expr: str):
    return parse_schedule(expr, "UTC")


def test_on_time_slot_fires_and_next_run_is_the_following_slot():
    d = decide(cron("* * * * *"), T0, T0 + 0.004, grace=600, overlap="skip", in_flight=())
    assert d.fire == T0 and d.missed is None and not d.skipped
    assert d.next_run == T0 + 60


def test_never_fires_before_its_time():
    sched = cron("0 * * * *")
    d = decide(sched, T0, T0, grace=600, overlap="skip", in_flight=())
    assert d.fire == T0 and d.next_run == T0 + 3600 > T0


def test_downtime_within_grace_runs_newest_once_and_counts_older_as_missed():
    # every minute; the daemon was down for 5 minutes and comes back 20 s after a slot
    d = decide(cron("* * * * *"), T0, T0 + 300 + 20, grace=60, overlap="skip", in_flight=())
    assert d.fire == T0 + 300
    assert d.missed is not None and d.missed.count == 5 and d.missed.newest == T0 + 240
    assert d.missed_first == T0
    assert d.next_run == T0 + 360


def test_downtime_beyond_grace_records_all_as_missed_and_runs_nothing():
    # a weekly job whose slot passed 42 hours ago must not run now
    weekly = cron("0 8 * * 5")  # T0 is a Friday 08:00
    d = decide(weekly, T0, T0 + 42 * 3600, grace=600, overlap="skip", in_flight=())
    assert d.fire is None
    assert d.missed is not None and d.missed.count == 1 and d.missed.newest == T0
    assert d.next_run == T0 + 7 * 86400


def test_interval_backlog_is_exact_and_anchored():
    every = parse_schedule("every 30s", "UTC", anchor=T0)
    b = backlog(every, T0 + 30, T0 + 30 * 1000 + 5)
    assert b.count == 1000 and b.newest == T0 + 30 * 1000
    d = decide(every, T0 + 30, T0 + 30 * 1000 + 5, grace=60, overlap="skip", in_flight=())
    assert d.next_run == T0 + 30 * 1001  # anchored: lateness never shifts the schedule


def test_huge_cron_backlog_is_capped_but_newest_is_exact():
    d = decide(cron("* * * * * *"), T0, T0 + 30 * 86400 + 0.5, grace=10, overlap="skip", in_flight=())
    assert d.fire == T0 + 30 * 86400
    assert d.missed.capped and d.missed.count >= COUNT_CAP - 1
    assert d.missed.newest == T0 + 30 * 86400 - 1


def test_overlap_policies():
    s = cron("* * * * *")
    skip = decide(s, T0, T0 + 0.1, 600, "skip", in_flight=(7,))
    assert skip.fire == T0 and skip.skipped
    allow = decide(s, T0, T0 + 0.1, 600, "allow", in_flight=(7,))
    assert allow.fire == T0 and not allow.skipped and allow.replaces == ()
    replace = decide(s, T0, T0 + 0.1, 600, "replace", in_flight=(7, 8))
    assert replace.fire == T0 and replace.replaces == (7, 8)


def test_one_shot_fires_once_then_is_done():
    at = parse_schedule("at 2027-01-15T08:00:00Z", "UTC")
    d = decide(at, T0, T0 + 0.2, 600, "skip", in_flight=())
    assert d.fire == T0 and d.done and d.next_run is None


def test_one_shot_missed_beyond_grace_is_done_and_recorded():
    at = parse_schedule("at 2027-01-15T08:00:00Z", "UTC")
    d = decide(at, T0, T0 + 3600, 600, "skip", in_flight=())
    assert d.fire is None and d.done and d.missed.count == 1
