"""Bringing schedule rows in line with the job definitions: which rows to add, reset, enable or
delete, decided from the rows and the jobs alone. Pure; the store applies the changes.

A new job, or one whose schedule, zone or anchor changed, starts from its first slot after
now. A resumed job does too: the time it spent paused is not caught up. Either way after the
slot the job was last claimed for when that is a moment ahead: a tick claims a slot a little
before it comes, and an edit in between would otherwise give the new schedule that same slot,
and start the job twice in that second. @reboot jobs added during a boot first run at the next
boot, as in cron.
"""

from __future__ import annotations

from typing import Mapping

from hermes_cron.errors import InvalidInput
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.sched import SchedChange, SchedRow
from hermes_cron.logic.schedule import AtSchedule

# A job's last slot this little ahead of now was claimed early (a tick claims a slot at most
# logic/wake.py's LEAD + MAX_LEAD, under 5 s, ahead of it). One further ahead means the clock
# stepped back since; an edit then starts from now, so that it never leaves a job waiting for it.
CLAIMED_AHEAD = 60.0


def initial_next_run(job: Job, now: float) -> float | None:
    """Where a new (or rescheduled, or resumed) job starts: its first slot after now.
    A one-shot keeps its time even if past, so the misfire policy decides about it."""
    sched = job.compiled
    if isinstance(sched, AtSchedule):
        return sched.when
    return sched.next_after(now)


def changed_jobs(old: Mapping[str, Job], new: Mapping[str, Job]) -> set[str]:
    """Names whose schedule state two versions of the definitions disagree on."""
    out = set(old.keys() ^ new.keys())
    for name, job in new.items():
        before = old.get(name)
        if before is not None and (before.fingerprint != job.fingerprint or before.enabled != job.enabled):
            out.add(name)
    return out


def plan(rows: Mapping[str, SchedRow], jobs: Mapping[str, Job], now: float, boot_id: str,
         names: set[str] | None = None) -> tuple[list[SchedChange], list[tuple[str, str]]]:
    """The changes that bring `rows` in line with `jobs` (only for `names`, if given), and the
    jobs whose first slot can't be computed, with why: they get no row, the others go on."""
    changes: list[SchedChange] = []
    broken: list[tuple[str, str]] = []
    for name in sorted(names if names is not None else jobs.keys() | rows.keys()):
        job, row = jobs.get(name), rows.get(name)
        first = None
        if job is not None:
            fresh = row is None or row.fingerprint != job.fingerprint
            resumed = row is not None and job.enabled and not row.enabled and not row.done
            after = now
            if row is not None and row.last_slot is not None and now < row.last_slot <= now + CLAIMED_AHEAD:
                after = row.last_slot  # claimed a moment ahead of its slot: the new schedule starts after it
            try:
                first = initial_next_run(job, after) if (fresh or resumed) else None
            except (InvalidInput, ValueError, OverflowError) as e:
                broken.append((name, f"{type(e).__name__}: {e}"))
                job = None
        if job is None:
            if row is not None:
                changes.append(SchedChange("delete", name))
            continue
        if row is None:
            changes.append(SchedChange("insert", name, job.fingerprint, job.enabled, job.kind, first, boot_id))
        elif row.fingerprint != job.fingerprint:
            changes.append(SchedChange("reset", name, job.fingerprint, job.enabled, job.kind, first, boot_id))
        elif row.enabled != job.enabled:
            if job.enabled and not row.done:
                changes.append(SchedChange("enable", name, next_run=first))
            else:
                changes.append(SchedChange("set-enabled", name, enabled=job.enabled))
    return changes, broken
