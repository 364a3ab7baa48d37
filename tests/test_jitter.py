"""--jitter: each slot of a job moves later by a stable per-job offset below the jitter, so jobs
on one schedule don't all start in one instant; never before the slot it shifts."""

from __future__ import annotations

import pytest

from hermes_cron.errors import InvalidInput
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.schedule import jitter_offset, upcoming

T0 = 1_800_000_000.0  # a minute boundary


def job(name: str, schedule: str, jitter: float) -> Job:
    return Job(name, ("true",), schedule, "UTC", jitter=jitter, anchor=T0, created=T0)


def test_cron_slots_move_by_a_stable_offset_below_the_jitter():
    plain = upcoming(job("a", "*/5 * * * *", 0).compiled, T0 - 1, 4)
    shifted = upcoming(job("a", "*/5 * * * *", 120).compiled, T0 - 1, 4)
    offset = jitter_offset("a", 120)
    assert 0 <= offset < 120
    assert shifted == [t + offset for t in plain]
    assert upcoming(job("a", "*/5 * * * *", 120).compiled, T0 - 1, 4) == shifted  # stable
    offsets = {jitter_offset(f"job{i}", 60) for i in range(50)}
    assert len(offsets) > 40, "jobs on one schedule are spread"


def test_interval_slots_move_too_and_fingerprints_only_change_with_jitter():
    j = job("b", "every 10m", 30)
    assert upcoming(j.compiled, T0, 2) == [T0 + 600 + jitter_offset("b", 30), T0 + 1200 + jitter_offset("b", 30)]
    assert job("b", "every 10m", 0).fingerprint == f"every 10m\0UTC\0{T0!r}"
    assert j.fingerprint != job("b", "every 10m", 0).fingerprint


def test_a_slot_due_just_before_its_jitter_is_not_due_yet():
    j = job("c", "* * * * *", 50)
    first = j.compiled.next_after(T0 - 1)
    assert first >= T0 and first == T0 + jitter_offset("c", 50)


def test_jitter_is_for_recurring_schedules():
    with pytest.raises(InvalidInput, match="recurring"):
        job("d", "at 2027-01-01T00:00", 10)
    assert Job.from_dict(job("e", "@hourly", 5).to_dict()).jitter == 5.0
