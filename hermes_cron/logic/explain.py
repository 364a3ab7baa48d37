"""Why a slot of a job ran or didn't (`hermes-cron explain`). Pure: no store, no files, no clock.

Given the job's definition history (store/journal.py's DefChange rows, or only its current
definition), its kept runs, the daemons' up-times, the live daemon's lock wait and `now`, each
moment gets one verdict, a sentence for people and facts for programs (times in ISO 8601 UTC):

    ran, running, skipped, missed, paused, not_defined, removed, not_a_slot, moved (by the DST
    rule), waiting_for_lock, not_yet, unknown (what would tell was pruned or never recorded)

A recorded run of a slot is the strongest fact, then a `missed` record covering it, then the
definition in force (paused), then the clock (future), the tick lock, the up-times (no daemon
was up), and last what was pruned. When the history doesn't reach the current definition (a
change it didn't record), the current one is taken to hold since the last thing known, and the
sentence says "at some time after".
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hermes_cron.errors import InvalidInput
from hermes_cron.logic.durations import format_duration
from hermes_cron.logic.explain_facts import (INF, Facts, Moment, Period, compile_fp, daemons_at, last_slots, periods,
                                             newest_spec, read_moment, up_end)
from hermes_cron.logic.schedule import CronSchedule, RebootSchedule, Schedule, ShiftedSchedule
from hermes_cron.logic.zones import format_instant, load_zone, offset_at, wall
from hermes_cron.logic.zones_lite import utc_iso

__all__ = ["Explanation", "Facts", "Moment", "explain_at", "explain_last", "read_moment"]
EPS = 1e-3  # a run's slot is the slot computed, to the millisecond
SNAP = 0.5  # a moment this close to a slot is that slot (a time typed to the second)
LAST_MAX = 1000
VERDICTS = ("ran", "running", "skipped", "missed", "paused", "not_defined", "removed", "not_a_slot", "moved",
            "waiting_for_lock", "not_yet", "unknown")


@dataclass(frozen=True)
class Explanation:
    """Why a slot of a job ran or didn't: a verdict, a sentence saying it, and the facts behind it."""

    job: str
    time: float  # the moment explained (a slot, or the instant asked about)
    verdict: str
    sentence: str
    facts: dict[str, Any] = field(default_factory=dict)
    detail: str = field(default="", compare=False, repr=False)  # the sentence without its subject

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "time": utc_iso(self.time), "verdict": self.verdict, "sentence": self.sentence,
                **self.facts}


def explain_at(f: Facts, m: Moment) -> Explanation:
    """The moment `m`: a slot (why it ran or not), a time moved by the DST rule, or no slot."""
    c = _Ctx(f)
    return c.dst(m) if m.dst is not None else c.at(m.instant)


def explain_last(f: Facts, n: int = 1) -> list[Explanation]:
    """The job's last `n` slots up to now, newest first (recorded ones included)."""
    c = _Ctx(f)
    if isinstance(c.sched(c.period(f.now)), RebootSchedule):
        return c.reboots(n)
    slots: list[float] = []
    for p in reversed(c.periods):
        sched = c.sched(p)
        if p.exists and p.start < f.now and sched is not None and len(slots) < n:
            slots += last_slots(sched, p.start - 1e-6, min(p.end - 1e-6, f.now), n - len(slots))
    slots += [x for x in c.slots if x <= f.now + SNAP]
    unique: list[float] = []
    for s in sorted(slots, reverse=True):
        if not unique or unique[-1] - s > EPS:
            unique.append(s)
    return [c.at(s) for s in unique[:n]] or [c.nothing_yet()]


class _Ctx:
    def __init__(self, f: Facts):
        self.f = f
        self.periods = periods(f)
        ref = f.current if f.current is not None else newest_spec(f.runs)
        self.grace = ref.misfire_grace if ref is not None else 600.0
        self.keep = ref.keep_runs if ref is not None else 50
        tz = ref.tz if ref is not None else next((p.fp[1] for p in reversed(self.periods) if p.fp), "UTC")
        try:
            self.zone = load_zone(tz)
        except InvalidInput:
            self.zone = load_zone("UTC")
        self.sched_runs = [r for r in f.runs if str(r.trigger) == "schedule" and r.scheduled is not None]
        self.by_slot: dict[int, list[Any]] = {}  # the runs of each slot, by the millisecond
        for r in self.sched_runs:
            self.by_slot.setdefault(round(r.scheduled * 1000), []).append(r)
        self.slots = sorted(r.scheduled for r in self.sched_runs)
        self.missed_runs = [r for r in self.sched_runs if str(r.outcome) == "missed"]
        done = [r.claimed_at for r in f.runs if str(r.state) == "done"]
        self.oldest_kept = min(done) if len(done) >= self.keep else None  # older records may be pruned
        self._compiled: dict[tuple[str, ...], Schedule | None] = {}

    # reading the facts ------------------------------------------------------------------

    def show(self, t: float | None) -> str:
        """In the job's zone with its offset; to the millisecond when it isn't a whole second."""
        if t is None or not math.isfinite(t):
            return "?"
        whole = math.floor(t)
        ms = int(round((t - whole) * 1000))  # rounded as utc_iso rounds, so the two agree
        whole, ms = (whole + 1, 0) if ms == 1000 else (whole, ms)
        text = format_instant(whole, self.zone)
        return f"{text[:19]}.{ms:03d}{text[19:]}" if ms else text

    def period(self, t: float) -> Period:
        return next((p for p in self.periods if p.start <= t < p.end), self.periods[-1])

    def sched(self, p: Period) -> Schedule | None:
        if p.fp is None:
            return None
        if p.fp not in self._compiled:
            self._compiled[p.fp] = compile_fp(self.f.job, p.fp)
        return self._compiled[p.fp]

    def make(self, t: float, verdict: str, subject: str, detail: str, **facts: Any) -> Explanation:
        return Explanation(self.f.job, t, verdict, f"{subject} {detail}.", facts, detail)

    def down_text(self, before: Any, after: Any) -> tuple[str, dict[str, Any]]:
        a = up_end(self.f, before) if before is not None else None
        b = after.started_at if after is not None else None
        facts = {"down_from": utc_iso(a), "down_until": utc_iso(b),
                 "down_how": before.how if before is not None else None}
        if a is None:
            text = f"no daemon was up before {self.show(b)} (none is recorded earlier)"
        else:
            text = f"no daemon was up from {self.show(a)} " + (f"to {self.show(b)}" if b is not None else "until now")
            if before.how == "crashed":
                text += f" (pid {before.pid} crashed: last seen at {self.show(a)})"
        return text, facts

    def pruned(self, t: float) -> float | None:
        return self.oldest_kept if self.oldest_kept is not None and t < self.oldest_kept else None

    # verdicts ---------------------------------------------------------------------------

    def at(self, t: float) -> Explanation:
        near = self.slots[bisect.bisect_left(self.slots, t - SNAP):bisect.bisect_right(self.slots, t + SNAP)]
        recorded = [x for x in near if abs(x - t) < SNAP]
        if recorded:
            s = min(recorded, key=lambda x: abs(x - t))
            return self.slot(s, self.period(s))
        p = self.period(t)
        if not p.exists:
            return self.absent(t, p)
        sched = self.sched(p)
        if sched is None:
            return self.make(t, "unknown", self.show(t), "can't be told: the job's schedule at that time is not kept",
                             why="schedule_not_kept")
        if isinstance(sched, RebootSchedule):
            return self.make(t, "not_a_slot", self.show(t), "is not a slot: a @reboot job runs once per machine "
                             "boot, at no time of a schedule", previous_slot=None, next_slot=None)
        nxt = sched.next_after(t - SNAP)
        if nxt is not None and nxt <= t + SNAP:
            return self.slot(nxt, p)
        return self.no_slot(t, p, sched, "")

    def absent(self, t: float, p: Period) -> Explanation:
        later = next((q for q in self.periods if q.start >= p.end and q.exists), None)
        added = later.start if later is not None else None
        if p.change == "before":
            return self.make(t, "not_defined", self.show(t), f"is before job {self.f.job!r} existed: it was added at "
                             f"{self.show(added)}", added_at=utc_iso(added))
        when = f"at {self.show(p.start)}" if p.exact else f"at some time after {self.show(p.start)} (when is " \
            "not recorded)"
        again = f"; it was added again at {self.show(added)}" if added is not None else ""
        return self.make(t, "removed", self.show(t), f"is after job {self.f.job!r} was removed, {when}{again}",
                         removed_at=utc_iso(p.start), exact=p.exact, added_again_at=utc_iso(added))

    def no_slot(self, t: float, p: Period, sched: Schedule, lead: str) -> Explanation:
        i = self.periods.index(p)
        first = p.start  # the job's existence around t, from its start to its removal
        for q in reversed(self.periods[:i]):
            if not q.exists:
                break
            first = q.start
        gone = next((q.start for q in self.periods[i + 1:] if not q.exists), INF)
        prev = (last_slots(sched, first, t - EPS, 1) or [None])[0]
        nxt = sched.next_after(t)
        nxt = nxt if nxt is not None and nxt <= gone else None
        jitter = f" (each slot {format_duration(sched.offset)} after its cron time: --jitter)" \
            if isinstance(sched, ShiftedSchedule) and sched.offset else ""
        ns = f"the previous slot is {self.show(prev)}" if prev is not None else "there is no slot before it"
        ns += f", the next {self.show(nxt)}" if nxt is not None else ", and none after it"
        manual = next((r for r in self.f.runs if str(r.trigger) == "manual" and r.scheduled is not None
                       and abs(r.scheduled - t) < 1.0), None)
        also = f"; run {manual.id} was a manual run (trigger) then" if manual is not None else ""
        detail = f"is not a slot of {sched.text!r} ({self.zone.key}){jitter}: {ns}{also}"
        return self.make(t, "not_a_slot", lead or self.show(t), detail, schedule=sched.text,
                         previous_slot=utc_iso(prev),
                         next_slot=utc_iso(nxt), manual_run_id=manual.id if manual is not None else None)

    def slot(self, s: float, p: Period) -> Explanation:
        """Why slot `s` (a slot of the schedule in force) ran or didn't."""
        f, subject = self.f, f"Slot {self.show(s)}"
        key = round(s * 1000)
        tries = sorted((r for k in (key - 1, key, key + 1) for r in self.by_slot.get(k, ())
                        if abs(r.scheduled - s) < EPS and str(r.outcome) != "missed"), key=lambda r: (r.attempt, r.id))
        if tries and str(tries[0].outcome) == "skipped":
            return self.skipped(s, subject, tries[0])
        if tries:
            return self.ran(s, subject, tries)
        missed = next((r for r in self.missed_runs if _first(r) - EPS <= s <= r.scheduled + EPS), None)
        if missed is not None:
            return self.missed(s, subject, missed)
        if not p.enabled:
            return self.paused(s, subject, p)
        if s > f.now:
            paused = " (the job is paused now: it won't run unless resumed)" if f.current is not None \
                and not f.current.enabled else ""
            return self.make(s, "not_yet", subject, f"has not come yet: it comes in {_ahead(s - f.now)}"
                             f"{paused}", next_slot=utc_iso(s), due=False)
        lw = f.lock_wait
        if lw is not None and lw.since <= s:
            held = f"held by pid {lw.holder_pid}" + (f" ({lw.holder_command})" if lw.holder_command else "") \
                if lw.holder_pid else "held by another process"
            return self.make(s, "waiting_for_lock", subject, f"has not run yet: the daemon (pid {f.daemon_pid}) has "
                             f"been waiting for the tick lock since {self.show(lw.since)}, {held}",
                             holder_pid=lw.holder_pid, holder_command=lw.holder_command,
                             waiting_since=utc_iso(lw.since))
        found = daemons_at(self.f, s)
        pruned = self.pruned(s)
        if found is not None and found[0] is None:
            down, facts = self.down_text(found[1], found[2])
            sched = self.sched(p)
            newer = sched.next_after(s) if sched is not None else None
            late = "" if found[2] is not None else (
                f"; a daemon started before {self.show(s + self.grace)} would still run it"
                if (newer is None or newer > f.now) and f.now - s <= self.grace
                else "; the next daemon to start records it as missed")
            kept = f" (its record is not kept: the job keeps its last {self.keep} runs)" if pruned else ""
            return self.make(s, "missed", subject, f"was not run: {down}{late}{kept}", run_id=None, recorded=False,
                             misfire_grace_s=self.grace, **facts)
        live = [u for u in f.uptimes if u.stopped_at is None and up_end(self.f, u) >= f.now]
        pid = f.daemon_pid if f.daemon_pid is not None else live[-1].pid if live else None
        if pid is not None and (f.now - s < 2.0 or (live and s > max(u.seen_at for u in live) - EPS)
                                or (not live and f.now - s < f.tick_interval + 2.0)):
            return self.make(s, "not_yet", subject, f"is due and not claimed yet: the daemon (pid {pid}) claims it "
                             "at its next tick", next_slot=utc_iso(s), due=True)
        if pruned is not None:
            return self.make(s, "unknown", subject, f"is not known any more: its record was pruned (the job keeps "
                             f"its last {self.keep} runs, --keep-runs; the oldest kept is from {self.show(pruned)})",
                             why="pruned", oldest_kept=utc_iso(pruned), keep_runs=self.keep)
        if found is None:
            return self.make(s, "unknown", subject, "has no run recorded, and no daemon up-time is kept for that "
                             "time", why="not_recorded")
        u = found[0]
        return self.make(s, "unknown", subject, f"has no run recorded, though a daemon was up then (pid {u.pid} on "
                         f"{u.node})", why="not_recorded", daemon_pid=u.pid, node=u.node)

    def ran(self, s: float, subject: str, tries: list[Any]) -> Explanation:
        texts = [f"{'retried as' if i else 'is running as' if r.outcome is None else 'ran as'} run {r.id}: "
                 f"{self.result(r)}" for i, r in enumerate(tries)]
        last, late = tries[-1], tries[0].claimed_at - s
        found = daemons_at(self.f, s) if late > 1.0 else None
        if found is not None and found[0] is None:
            texts[0] += f" ({format_duration(round(late))} late: {self.down_text(found[1], found[2])[0]})"
        running = any(r.outcome is None for r in tries)
        attempts = [{"run_id": r.id, "attempt": r.attempt, "status": None if r.outcome is None else str(r.outcome),
                     "state": str(r.state), "exit_code": r.exit_code, "signal": r.signal,
                     "started_at": utc_iso(r.started_at), "ended_at": utc_iso(r.ended_at),
                     "duration_s": _duration(r), "reason": r.reason} for r in tries]
        return self.make(s, "running" if running else "ran", subject, ", ".join(texts), run_id=last.id,
                         status=attempts[-1]["status"], exit_code=last.exit_code, signal=last.signal,
                         started_at=utc_iso(last.started_at), ended_at=utc_iso(last.ended_at),
                         duration_s=_duration(last), retried=len(tries) > 1, attempts=attempts)

    def result(self, r: Any) -> str:
        o, d = (str(r.outcome) if r.outcome is not None else None), _duration(r)
        took = f" after {_secs(d)}" if d is not None else ""
        why = f" ({_clip(r.reason)})" if r.reason else ""
        if o is None:
            state = str(r.state)
            return f"running since {self.show(r.started_at)}" if state == "running" else \
                "claimed, waiting for its start" + (f" at {self.show(r.scheduled)}" if state == "claimed" else "")
        if o == "succeeded":
            return f"succeeded in {_secs(d)}" if d is not None else "succeeded"
        if o == "failed":
            return (f"failed with exit {r.exit_code}" if r.exit_code is not None else
                    f"failed, killed by signal {r.signal}" if r.signal else "failed") + took + \
                ("" if r.exit_code is not None or r.signal else why)
        if o == "timed_out":
            return f"timed out{took}"
        return f"{'was interrupted' if o == 'interrupted' else 'was lost' if o == 'lost' else o}{why}"

    def skipped(self, s: float, subject: str, rec: Any) -> Explanation:
        m = re.search(r"run\(s\) ([0-9, ]+) still in flight", rec.reason or "")
        ids = [int(x) for x in m.group(1).split(",") if x.strip()] if m else []
        by_id = {r.id: r for r in self.f.runs}
        shown = []
        for i in ids:
            r = by_id.get(i)
            shown.append(f"run {i}" + (f" (slot {self.show(r.scheduled)}, started {self.show(r.started_at)}, "
                                       f"{'ended ' + self.show(r.ended_at) if r.ended_at else 'still going'})"
                                       if r is not None and r.scheduled is not None else ""))
        detail = f"was skipped (run {rec.id}): " + (f"{', '.join(shown)} {'was' if len(ids) == 1 else 'were'} still "
                                                      "running (--overlap skip)" if ids else _clip(rec.reason or "?"))
        return self.make(s, "skipped", subject, detail, run_id=rec.id, overlapping_run_ids=ids, reason=rec.reason)

    def missed(self, s: float, subject: str, rec: Any) -> Explanation:
        late = rec.claimed_at - s
        found = daemons_at(self.f, s)
        facts: dict[str, Any] = {"down_from": None, "down_until": None, "down_how": None}
        if found is not None and found[0] is None:
            down, facts = self.down_text(found[1], found[2])
        elif found is not None:
            down = f"a daemon was up (pid {found[0].pid}), but the ticks didn't claim it in time (machine asleep, or " \
                "ticks held up)"
        else:
            down = "the daemon was down, the machine asleep or the ticks held up (no daemon up-time is kept for then)"
        why = f"it was {format_duration(round(late))} late when recorded at {self.show(rec.claimed_at)}, beyond the " \
            f"misfire grace ({format_duration(self.grace)})" if late > self.grace else \
            "a newer slot came before any tick could run it, and only the newest slot that passed is run late"
        count = f" (one of {rec.missed_count} slots missed together, run {rec.id})" if (rec.missed_count or 1) > 1 \
            else f" (run {rec.id})"
        return self.make(s, "missed", subject, f"was missed{count}: {down}; {why}", run_id=rec.id, recorded=True,
                         missed_count=rec.missed_count, first_missed=utc_iso(rec.first_missed),
                         last_missed=utc_iso(rec.scheduled), recorded_at=utc_iso(rec.claimed_at),
                         misfire_grace_s=self.grace, late_s=round(late, 3), **facts)

    def paused(self, s: float, subject: str, p: Period) -> Explanation:
        resumed = next((q.start for q in self.periods if q.start >= p.end and q.enabled and q.exists), None)
        since = "(since before the kept history)" if p.start == -INF else \
            f"at {self.show(p.start)}" if p.exact else f"at some time after {self.show(p.start)} (when is not recorded)"
        then = f", resumed at {self.show(resumed)}" if resumed is not None else ", and is still paused" \
            if self.f.current is not None and not self.f.current.enabled else ""
        return self.make(s, "paused", subject, f"did not run: the job was paused {since}{then}",
                         paused_at=utc_iso(p.start if p.start > -INF else None), exact=p.exact,
                         resumed_at=utc_iso(resumed))

    def dst(self, m: Moment) -> Explanation:
        assert m.wall is not None
        p = self.period(m.instant)
        sched = self.sched(p)
        base, shift = (sched.base, sched.offset) if isinstance(sched, ShiftedSchedule) else (sched, 0.0)
        if not p.exists or not isinstance(base, CronSchedule):  # intervals and one-shots keep no wall times
            return self.at(m.instant)
        names = base.spec.next_wall(m.wall, m.wall + timedelta(seconds=1)) == m.wall
        shown = m.wall.isoformat(sep=" ", timespec="seconds")
        tz = self.zone.key
        if m.dst == "gap":
            j = m.instant
            jumps = (wall(j, offset_at(self.zone, j - 1)), wall(j, offset_at(self.zone, j)))
            lead = f"{shown} does not exist in {tz}: the clocks jump from {jumps[0]:%H:%M} to {jumps[1]:%H:%M} (DST)"
            if names and not base.spec.wildcard:
                return self.moved(m, j + shift, lead, "the schedule runs at the jump for it", "dst_gap")
            if names:
                lead += ", and this schedule follows the clock (its minute or hour field starts with *), so it " \
                    "doesn't run at a time the clock never shows; it"
            else:
                lead += "; it"
            return self.no_slot(m.instant, p, sched, lead)
        assert m.second is not None
        lead = f"{shown} happens twice in {tz} (DST ends), at {self.show(m.instant)} and at {self.show(m.second)}"
        if not names:
            return self.no_slot(m.instant, p, sched, lead + "; it")
        if not base.spec.wildcard:
            return self.moved(m, m.instant + shift, lead, "the schedule runs at the first only", "dst_repeat")
        one, two = self.at(m.instant + shift), self.at(m.second + shift)
        detail = f"this schedule follows the clock and runs at both: the first {one.detail}; the second {two.detail}"
        return Explanation(self.f.job, one.time, one.verdict, f"{lead}: {detail}.", {**one.facts, "wall": shown,
                           "dst": "repeat", "second": two.to_dict()}, detail)

    def moved(self, m: Moment, to: float, lead: str, how: str, why: str) -> Explanation:
        inner = self.at(to)
        detail = f"{how}, {self.show(to)}; that slot {inner.detail}"
        return Explanation(self.f.job, m.instant, "moved", f"{lead}: {detail}.",
                           {"wall": m.wall.isoformat(timespec="seconds") if m.wall else None, "why": why,
                            "moved_to": utc_iso(to), "slot": inner.to_dict()}, detail)

    def nothing_yet(self) -> Explanation:
        p = self.period(self.f.now)
        sched = self.sched(p)
        nxt = sched.next_after(self.f.now) if sched is not None and p.exists else None
        since = f" since it was added at {self.show(p.start)}" if p.change == "insert" and p.start > -INF else ""
        then = f": the next is {self.show(nxt)}" if nxt is not None else ", and none is to come" if p.exists \
            else f": job {self.f.job!r} is not defined now"
        return self.make(self.f.now, "not_yet", f"Job {self.f.job!r}", f"has had no slot yet{since}{then}",
                         next_slot=utc_iso(nxt), due=False)

    def reboots(self, n: int) -> list[Explanation]:
        boots = sorted((r for r in self.f.runs if str(r.trigger) == "reboot"), key=lambda r: -r.claimed_at)[:n]
        out = [self.ran(r.claimed_at, f"The boot run at {self.show(r.claimed_at)}", [r]) for r in boots]
        return out or [self.make(self.f.now, "not_yet", f"Job {self.f.job!r}", "has not run yet: a @reboot job runs "
                                 "once per machine boot, first at the next one", next_slot=None, due=False)]


def _ahead(seconds: float) -> str:
    return format_duration(round(seconds)) if seconds < 2 * 86400 else f"{seconds / 86400:.0f} days"


def _first(r: Any) -> float:
    """The first slot a missed record counts."""
    return r.first_missed if r.first_missed is not None else r.scheduled


def _duration(r: Any) -> float | None:
    if r.started_at is None or r.ended_at is None:
        return None
    return round(max(0.0, r.ended_at - r.started_at), 3)


def _secs(d: float) -> str:
    return f"{d:.3g} s" if d < 60 else format_duration(round(d))


def _clip(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
