"""What the daemon wakes for next, decided from the times alone (pure).

The loop wakes at the earliest of: the next tick boundary, the next due slot, and the next
deadline of a run it watches. A due slot is woken for early (the lead), so its runs are
claimed and handed to their supervisors before the slot, and start on it; a burst of many
runs due at once gets more lead, up to a cap.
"""

from __future__ import annotations

from dataclasses import dataclass

# Wake this long before a due slot: claim it (durably: the commit is fsynced, and a VM's disk
# now and then takes a few hundred ms for that), hand it to a supervisor, and start it on the
# slot. The lead absorbs that jitter instead of the job's start time.
LEAD = 0.25
LEAD_PER_RUN = 0.004  # and this much earlier for each run due at that moment (bursts: each run's folder
MAX_LEAD = 4.5  # and files are made and its process held before its slot, ~3-4 ms of a core), up to this.
# (At 2.5 ms a run, the four supervisors of a 1,000-run burst on 2 cores had held 160-250 runs
# each by the slot, and the rest started the slow way: 220-520 ms to the last start; at 4 ms, all
# are held: 196-241 ms. scripts/profile_burst.py 1000.) The supervisors hold at most HOLD_AHEAD
# (engine/supervisor.py) before a slot, which is longer than this lead.


@dataclass(frozen=True)
class Wake:
    """When the loop wakes next, and for what moment."""

    target: float  # the moment something is due: a tick, a slot or a deadline
    at: float  # when to wake for it (target minus the lead)


def next_wake(next_tick: float, next_due: float | None, due_count: int, deadline: float | None) -> Wake:
    target, lead = next_tick, LEAD
    if next_due is not None and next_due <= target:
        target = next_due
        lead += min(due_count * LEAD_PER_RUN, MAX_LEAD)
    if deadline is not None:
        target = min(target, deadline)
    return Wake(target, target - lead)


def boundary_after(now: float, step: float) -> float:
    """The first tick boundary after `now`: ticks fall on wall-clock multiples of the interval.
    Strictly after: with an interval that binary floats can't hold exactly (0.1, 0.2, 0.3), the
    product can round back onto `now` itself, a boundary just ticked (the loop then ticked the
    same boundary over and over, using a whole core)."""
    k = now // step + 1
    boundary = k * step
    return boundary if boundary > now else (k + 1) * step


# The spare supervisor (engine/spawn.py's Spare) saves a due run the fork of its supervisor.
# It is kept only while a slot is near: forked at the last wake before that slot (a tick or
# less ahead, plus the longest lead, so no extra wake-up is needed for it), dismissed when
# nothing is due for twice that long. An idle daemon whose jobs are hours away holds no spare:
# the spare's memory, which grows as the daemon's pages change under it (copy-on-write), is
# given back, and the spare a slot gets is a fresh one.
SPARE_AHEAD = MAX_LEAD + 2 * LEAD + 1.0


def spare_horizon(tick_interval: float) -> float:
    """How far ahead a due slot makes the daemon keep a spare supervisor."""
    return tick_interval + SPARE_AHEAD


def spare_wanted(next_due: float | None, now: float, tick_interval: float) -> bool | None:
    """True: fork a spare if there is none; False: dismiss the one there is; None: leave it as
    it is (between the two horizons, so a spare is not forked and dismissed by turns)."""
    horizon = spare_horizon(tick_interval)
    if next_due is not None and next_due - now <= horizon:
        return True
    if next_due is None or next_due - now > 2 * horizon:
        return False
    return None
