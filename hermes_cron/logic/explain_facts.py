"""The facts `explain` (logic/explain.py) reads, put in order. Pure: the job's definition over
time, from its recorded changes (store/journal.py's DefChange rows) or, where they don't reach,
from its current definition and the specs its runs were claimed with; a moment asked about
(a wall time the zone skips or repeats included); the slots of a schedule before a time; and
which daemon was up at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Sequence

from hermes_cron.errors import InvalidInput
from hermes_cron.logic.schedule import HORIZON, Schedule, jittered, parse_at, parse_schedule
from hermes_cron.logic.zones import localize_first, offset_at, wall

INF = math.inf


@dataclass(frozen=True)
class Facts:
    """What is known, as the store and the heartbeat have it (duck-typed records)."""

    job: str
    now: float
    current: Any = None  # logic.jobs.Job as defined now; None: not defined now
    changes: Sequence[Any] = ()  # DefChange(job, at, change, fingerprint, enabled), oldest first
    runs: Sequence[Any] = ()  # RunRecord: the job's kept runs
    uptimes: Sequence[Any] = ()  # Uptime(node, pid, started_at, seen_at, stopped_at, how)
    lock_wait: Any = None  # LockWait(since, holder_pid, holder_command) of the live daemon
    daemon_pid: int | None = None  # the daemon running now, if any
    tick_interval: float = 60.0
    seen_every: float = 300.0  # how often an up-time's seen_at is refreshed (local store: each heartbeat)


@dataclass(frozen=True)
class Period:
    """A stretch [start, end) over which the job's definition stood still (a change applied at
    a slot's instant holds for it: the tick that applied it decided the slot after)."""

    start: float  # -INF: as far back as known
    end: float  # INF: still
    exists: bool
    enabled: bool
    fp: tuple[str, ...] | None  # schedule, zone, anchor[, jitter]; None: not known
    change: str  # what began it: insert, reset, enable, set-enabled, delete, before, assumed
    exact: bool = True  # False: it began at some unrecorded time after `start`


@dataclass(frozen=True)
class Moment:
    """An instant asked about; for a wall time the zone skips or shows twice, which."""

    instant: float
    wall: datetime | None = None
    dst: str | None = None  # "gap" (instant: the jump) or "repeat" (instant: the first occurrence)
    second: float | None = None  # a repeated wall time's second occurrence


def read_moment(text: str, zone: Any) -> Moment:
    """`--at`: ISO 8601, in `zone` unless it carries an offset (as parse_at reads it), and also a
    wall time the zone skips or repeats, which parse_at refuses."""
    try:
        return Moment(parse_at(text, zone, "--at"))
    except InvalidInput:
        raw = text.strip().replace(" ", "T", 1)
        try:
            moment = datetime.fromisoformat(raw) if raw.isascii() and len(raw) <= 40 else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is not None:
            raise
        moment = moment.replace(microsecond=0)
        a, b = (moment.replace(tzinfo=zone, fold=k) for k in (0, 1))
        if a.utcoffset() == b.utcoffset():
            raise
        first, second = sorted((a.timestamp(), b.timestamp()))
        if all(wall(t, offset_at(zone, t)) == moment for t in (first, second)):
            return Moment(first, moment, "repeat", second)
        return Moment(localize_first(moment, zone), moment, "gap")


def compile_fp(name: str, fp: Sequence[str]) -> Schedule | None:
    """The schedule a fingerprint (schedule, zone, anchor[, jitter]) stands for, as Job.compiled."""
    try:
        sched = parse_schedule(fp[0], fp[1], hash_key=name, anchor=float(fp[2]))
        return jittered(sched, name, float(fp[3])) if len(fp) > 3 and float(fp[3]) else sched
    except (InvalidInput, ValueError, IndexError, TypeError, OverflowError):
        return None


def _fp(job: Any) -> tuple[str, ...]:
    return tuple(job.fingerprint.split("\0"))


def spec_of(run: Any) -> Any:
    return getattr(run, "job_spec", None)


def newest_spec(runs: Sequence[Any]) -> Any:
    """The job as its newest run with a copy of it was claimed (skipped and missed slots have none)."""
    for r in sorted(runs, key=lambda r: -r.claimed_at)[:50]:
        if spec_of(r) is not None:
            return spec_of(r)
    return None


def periods(f: Facts) -> list[Period]:
    """The job's definition over time, oldest first, covering (-INF, INF]."""
    hist, cur_job = list(f.changes), f.current
    newest = max(f.runs, key=lambda r: r.claimed_at, default=None)
    spec = newest_spec(f.runs)
    cur = (True, cur_job.enabled, _fp(cur_job)) if cur_job is not None else (False, False, None)
    out: list[Period] = []
    if hist:
        first = hist[0]
        if first.change == "insert":
            state, start, change = (False, False, None), -INF, "before"
        else:  # the job is older than its kept history: since it was created, if that is known
            enabled = (not first.enabled) if first.change == "set-enabled" else first.change != "enable"
            state, start, change = (True, enabled, None), -INF, "assumed"
            made = getattr(cur_job if cur_job is not None else spec, "created", 0.0) or -INF
            if -INF < made < first.at:
                out.append(Period(-INF, made, False, False, None, "before"))
                start, change = made, "insert"
        for row in hist:
            out.append(Period(start, row.at, *state, change))
            if row.change in ("insert", "reset"):
                state = (True, row.enabled, tuple(row.fingerprint) if row.fingerprint else None)
            elif row.change == "delete":
                state = (False, False, None)
            else:
                state = (True, True if row.change == "enable" else row.enabled, state[2])
            start, change = row.at, row.change
    elif cur_job is not None:
        start = cur_job.created or -INF
        if start > -INF:
            out.append(Period(-INF, start, False, False, None, "before"))
        change = "insert" if start > -INF else "assumed"
        state = (True, True, _fp(spec) if spec is not None else cur[2]) if newest is not None else cur
        if newest is None and not cur_job.enabled:  # paused since it was added, or since later
            out.append(Period(start, INF, *cur, change, exact=False))
            return _fill(f, out)
    else:
        state, start, change = (True, True, _fp(spec) if spec is not None else None), -INF, "assumed"
    if state[0] and state[2] is None and cur_job is not None:
        state = (True, state[1], cur[2])
    if state != cur:  # a change the history didn't record: after the last thing known
        boundary = max(start, newest.claimed_at) if newest is not None else start
        out.append(Period(start, boundary, *state, change))
        out.append(Period(boundary, INF, *cur, "delete" if cur_job is None else "assumed", exact=False))
    else:
        out.append(Period(start, INF, *state, change))
    return _fill(f, out)


def _fill(f: Facts, out: list[Period]) -> list[Period]:
    """A schedule the history doesn't name: the one the runs of that time were claimed with, else
    the current one when no schedule change came after."""
    done = []
    for i, p in enumerate(out):
        if p.exists and p.fp is None:
            for r in sorted(f.runs, key=lambda r: -r.claimed_at):
                if p.start <= r.claimed_at < p.end and spec_of(r) is not None:
                    p = replace(p, fp=_fp(spec_of(r)))
                    break
            else:
                if f.current is not None and not any(q.change in ("insert", "reset") for q in out[i + 1:]):
                    p = replace(p, fp=_fp(f.current))
        done.append(p)
    return done


def last_slots(sched: Schedule, lo: float, hi: float, n: int) -> list[float]:
    """The newest `n` slots in (lo, hi], newest first (lo may be -INF)."""
    lo = max(lo, hi - HORIZON)
    window = 64.0
    while True:
        start = max(lo, hi - window)
        found: list[float] = []
        t = start
        while (x := sched.next_after(t)) is not None and x <= hi:
            found.append(x)
            t = x
            if len(found) > 4 * n + 1000:
                del found[:-n]
        if len(found) >= n or start <= lo:
            return found[::-1][:n]
        window *= 4


def up_end(f: Facts, u: Any) -> float:
    """When an up-time ended: its stop, else now while it is seen ticking, else its last tick."""
    if u.stopped_at is not None:
        return u.stopped_at
    if f.daemon_pid is not None and u.pid == f.daemon_pid:
        return f.now  # the daemon running now
    return f.now if f.now - u.seen_at <= 2 * max(f.seen_every, f.tick_interval) + 5 else u.seen_at


def daemons_at(f: Facts, t: float) -> tuple[Any, Any, Any] | None:
    """(the up-time covering t, or None; the one that ended last before t; the first one starting
    after t); None when no up-time is kept at all."""
    ups = list(f.uptimes)
    if not ups:
        return None
    covering = next((u for u in ups if u.started_at <= t <= up_end(f, u)), None)
    before = max((u for u in ups if up_end(f, u) < t), key=lambda u: up_end(f, u), default=None)
    after = min((u for u in ups if u.started_at > t), key=lambda u: u.started_at, default=None)
    return covering, before, after
