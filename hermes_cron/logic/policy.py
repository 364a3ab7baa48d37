"""What a tick does with a due job: the misfire and overlap policies. Pure code.

The misfire policy, the one place it lives (README "Missed runs" says the same):
- A slot is fired only once its time has come, never before.
- When a tick finds slots that came due since the job's last decision (the daemon was down,
  the machine slept, the tick was late), the newest of them runs once if it is no older than
  the job's misfire grace (default 10 minutes). Every older slot, and the newest too when it
  is older than the grace, is recorded as missed: one record per job and tick, with the count.
- The job's next run is then the first slot after now, on its own schedule; nothing is
  shifted by the lateness.

The overlap policy, when a slot fires while an earlier run of the job is still in flight:
`skip` records the slot as skipped, `allow` starts another run, `replace` starts a new run
that first stops the old ones (TERM to their process group, then KILL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hermes_cron.logic.schedule import IntervalSchedule, Schedule

COUNT_CAP = 10_000  # beyond this many missed slots the count is reported as "at least"


@dataclass(frozen=True)
class Backlog:
    """The slots in [first, now]: how many, the newest, and whether the count was capped."""

    count: int
    newest: float
    capped: bool = False
    following: float | None = None  # the first slot after now, when the count found it


def backlog(schedule: Schedule, first: float, now: float) -> Backlog:
    """Count the slots from `first` (itself a slot, <= now) up to `now`."""
    if isinstance(schedule, IntervalSchedule):
        n = schedule.slots_between(first - 1e-6, now)
        n = max(n, 1)
        return Backlog(n, first + (n - 1) * schedule.period)
    count, newest = 1, first
    while True:
        nxt = schedule.next_after(newest)
        if nxt is None or nxt > now:
            return Backlog(count, newest, following=nxt)
        count, newest = count + 1, nxt
        if count >= COUNT_CAP:
            return Backlog(count, _newest_at_or_before(schedule, newest, now), capped=True)


def _newest_at_or_before(schedule: Schedule, known: float, now: float) -> float:
    """The newest slot <= now, given a slot `known` <= now; searches back from now in widening steps."""
    window = 60.0
    while now - window > known:
        probe = schedule.next_after(now - window)
        if probe is not None and probe <= now:
            known = probe
            break
        window *= 4
    while True:
        nxt = schedule.next_after(known)
        if nxt is None or nxt > now:
            return known
        known = nxt


@dataclass(frozen=True)
class Decision:
    """What to record for one due job in one tick."""

    fire: float | None = None  # the slot to run, if any
    missed: Backlog | None = None  # slots recorded as missed (one record)
    missed_first: float | None = None
    skipped: bool = False  # `fire` was skipped by the overlap policy
    replaces: tuple[int, ...] = field(default=())  # in-flight run ids the new run stops first
    next_run: float | None = None
    done: bool = False  # a one-shot: never due again


def decide(
    schedule: Schedule,
    first: float,
    now: float,
    grace: float,
    overlap: str,
    in_flight: tuple[int, ...],
) -> Decision:
    """Decide for a job whose first undecided slot `first` is <= `now`."""
    if first > now:
        raise ValueError("decide() needs a due job")
    slots = backlog(schedule, first, now)
    next_run = slots.following if slots.following is not None else schedule.next_after(now)
    done = next_run is None
    fire: float | None = slots.newest if now - slots.newest <= grace else None
    missed_count = slots.count - (1 if fire is not None else 0)
    missed = None
    if missed_count:
        newest_missed = slots.newest if fire is None else _previous(schedule, first, slots.newest)
        missed = Backlog(missed_count, newest_missed, slots.capped)
    if fire is None:
        return Decision(missed=missed, missed_first=first if missed else None, next_run=next_run, done=done)
    if in_flight and overlap == "skip":
        return Decision(
            fire=fire, skipped=True, missed=missed, missed_first=first if missed else None,
            next_run=next_run, done=done,
        )
    replaces = in_flight if overlap == "replace" else ()
    return Decision(
        fire=fire, replaces=replaces, missed=missed, missed_first=first if missed else None,
        next_run=next_run, done=done,
    )


def _previous(schedule: Schedule, first: float, newest: float) -> float:
    """The slot just before `newest`, at or after `first`."""
    if isinstance(schedule, IntervalSchedule):
        return newest - schedule.period
    prev, t = first, first
    window = 60.0
    while newest - window > first:
        probe = schedule.next_after(newest - window)
        if probe is not None and probe < newest:
            t = probe
            break
        window *= 4
    prev = t
    while True:
        nxt = schedule.next_after(prev)
        if nxt is None or nxt >= newest:
            return prev
        prev = nxt


def retry_at(job, failed_attempt: int, outcome: str, ended: float, next_slot: float | None,
             rand: float) -> tuple[float | None, str]:
    """When to start the next attempt of a slot whose attempt `failed_attempt` ended `outcome` at
    `ended`, and why not if never: exponential backoff from the job's retry delay (doubled per
    attempt, capped, with up to 10% jitter from `rand` in [0, 1)); only for failed or timed-out
    runs with attempts left, and never once the job's next slot has come (the schedule wins)."""
    if job.retries <= 0 or outcome not in ("failed", "timed_out"):
        return None, ""
    if failed_attempt > job.retries:
        return None, f"no retries left ({job.retries})"
    delay = min(job.retry_max_delay, job.retry_delay * 2 ** (failed_attempt - 1)) * (1.0 + 0.1 * rand)
    at = ended + delay
    if next_slot is not None and at >= next_slot:
        return None, "its next slot comes before the retry would"
    return at, ""
