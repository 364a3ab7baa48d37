"""Schedules: when a job fires. Pure code: every question takes the instant it is asked about.

Instants are POSIX timestamps (float seconds, UTC). Four kinds:
- cron expressions (see cronexpr), evaluated on the job's zone's wall clock;
- `every 30s` intervals, anchored to the job's own anchor instant, never to run ends;
- `at 2026-12-01T09:00` one-shots, in the job's zone unless the text carries an offset;
- `@reboot`, once per machine boot (the ticker keys it on the boot id).

The DST rule, the one place it lives (README "Time zones and DST" says the same):
- A schedule that names its hours (`30 2 * * *`, `@daily`) runs once at each named wall time.
  A time the clock skips runs at the moment of the jump (02:30 on a spring-forward night runs
  at 03:00 new time); a time the clock shows twice runs at its first occurrence only.
- A schedule whose minute or hour field starts with `*` (`*/15 * * * *`, `@hourly`,
  `* 2 * * *`) follows the clock as it reads: it runs in both passes of a repeated hour and
  not at all at minutes a skipped hour never shows.
This is the rule of Vixie cron and cronie, which is what people moving from cron expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from hermes_cron.logic.cronexpr import CronSpec, parse_cron
from hermes_cron.logic.durations import INTERVAL, parse_duration
from hermes_cron.errors import InvalidInput
from hermes_cron.logic.zones import format_instant, instant, load_zone, localize_first, timeline, wall

HORIZON = 10 * 366 * 86400  # a cron expression that doesn't fire within ten years never will
YEARS = (1970, 2999)  # the years a one-shot or a --from time may name
MAX_SCHEDULE = 1000  # characters
_DAY = 86400.0


@dataclass(frozen=True)
class CronSchedule:
    """A cron expression's slots, in a time zone."""

    spec: CronSpec
    zone: ZoneInfo
    kind = "cron"

    @property
    def text(self) -> str:
        return self.spec.text

    def next_after(self, t: float) -> float | None:
        """The first fire instant strictly after `t`, or None if none within the horizon."""
        tl = timeline(self.zone)
        limit = t + HORIZON
        seg_start = tl.last_transition(t, _DAY)
        cursor = t
        while cursor < limit:
            off = tl.offset(cursor)
            seg_end = tl.next_transition(cursor, _DAY * 400)
            hi_wall = wall(seg_end, off) if seg_end is not None else wall(cursor + _DAY * 400, off)
            start_wall = wall(int(t) + 1, off) if cursor == t else wall(cursor, off)
            if seg_start is not None:
                prev_off = tl.offset(seg_start - 1)
                lo_off = off if self.spec.wildcard else max(off, prev_off)
                start_wall = max(start_wall, wall(seg_start, lo_off))
                if not self.spec.wildcard and prev_off < off and seg_start > t:
                    gap = self.spec.next_wall(wall(seg_start, prev_off), wall(seg_start, off))
                    if gap is not None:
                        return seg_start
            found = self.spec.next_wall(start_wall, hi_wall)
            if found is not None:
                return instant(found, off)
            if seg_end is None:
                cursor = cursor + _DAY * 400
                seg_start = None
            else:
                cursor = seg_end
                seg_start = seg_end
        return None


@dataclass(frozen=True)
class IntervalSchedule:
    """Slots every `period` seconds, counted from `anchor`."""

    text: str
    period: float
    anchor: float
    kind = "interval"

    def next_after(self, t: float) -> float | None:
        k = max(1, int((t - self.anchor) // self.period) + 1)
        slot = self.anchor + k * self.period
        while slot <= t:  # float rounding
            k += 1
            slot = self.anchor + k * self.period
        return slot

    def slots_between(self, after: float, until: float) -> int:
        """How many slots fall in (after, until]."""
        if until <= after:
            return 0
        first = self.next_after(after)
        if first is None or first > until:
            return 0
        return int((until - first) // self.period) + 1


@dataclass(frozen=True)
class AtSchedule:
    """One slot, at `when`."""

    text: str
    when: float
    kind = "at"

    def next_after(self, t: float) -> float | None:
        return self.when if self.when > t else None


@dataclass(frozen=True)
class RebootSchedule:
    """No slot of its own: the job runs once when the machine has booted."""

    text: str = "@reboot"
    kind = "reboot"

    def next_after(self, t: float) -> float | None:
        return None


@dataclass(frozen=True)
class ShiftedSchedule:
    """A cron schedule whose every slot comes `offset` seconds late: a job's jitter (see
    `jittered`), never before the slot it shifts."""

    base: CronSchedule
    offset: float
    kind = "cron"

    @property
    def text(self) -> str:
        return self.base.text

    def next_after(self, t: float) -> float | None:
        found = self.base.next_after(t - self.offset)
        return None if found is None else found + self.offset


Schedule = CronSchedule | IntervalSchedule | AtSchedule | RebootSchedule | ShiftedSchedule


def jitter_offset(key: str, jitter: float) -> float:
    """A stable offset in [0, jitter) for `key` (a job's name), to the millisecond."""
    import hashlib

    span = int(jitter * 1000)
    if span <= 0:
        return 0.0
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % span / 1000.0


def jittered(schedule: Schedule, key: str, jitter: float) -> Schedule:
    """`schedule` with a job's jitter: each slot moved later by the job's stable offset (as `H`
    spreads minutes, so jobs on one schedule don't all start in the same instant)."""
    if not jitter:
        return schedule
    offset = jitter_offset(key, jitter)
    if isinstance(schedule, IntervalSchedule):
        return IntervalSchedule(schedule.text, schedule.period, schedule.anchor + offset)
    if isinstance(schedule, CronSchedule):
        return ShiftedSchedule(schedule, offset)
    raise InvalidInput("--jitter applies to recurring schedules (cron expressions and intervals)")

_EVERY = re.compile(r"^every\s+(.+)$", re.IGNORECASE)
_AT = re.compile(r"^at\s+(.+)$", re.IGNORECASE)


@lru_cache(maxsize=65536)
def parse_schedule(text: str, tz: str, hash_key: str = "", anchor: float = 0.0) -> Schedule:
    """Parse a schedule; raise InvalidInput naming what is wrong. Cached: reloading a store of
    many jobs after one edit recompiles only the schedule that changed."""
    raw = " ".join(text.split())
    if not raw:
        raise InvalidInput("schedule is empty")
    zone = load_zone(tz)
    if raw.lower() == "@reboot":
        return RebootSchedule()
    if len(raw) > MAX_SCHEDULE:
        raise InvalidInput(f"schedule {raw[:20]!r}... is longer than {MAX_SCHEDULE} characters")
    if raw.lower() in ("every", "at"):
        example = "every 5m" if raw.lower() == "every" else "at 2026-12-01T09:00"
        raise InvalidInput(f"schedule {raw!r} needs {'an interval' if raw.lower() == 'every' else 'a time'}, "
                           f"e.g. {example!r}")
    m = _EVERY.match(raw)
    if m:
        return IntervalSchedule(raw, parse_duration(m.group(1), "interval", INTERVAL), anchor)
    m = _AT.match(raw)
    if m:
        return AtSchedule(raw, parse_at(m.group(1), zone))
    return CronSchedule(parse_cron(raw, hash_key), zone)


def parse_at(text: str, zone: ZoneInfo, what: str = "one-shot time") -> float:
    """`2026-12-01T09:00` in `zone`, or with its own offset (`+01:00`, `Z`), in the years
    1970 to 2999. A local time the clock skips (a DST gap) is refused naming the jump; one it
    shows twice is refused showing both offsets, so the user says which one."""
    raw = text.strip().replace(" ", "T", 1)
    try:
        if not raw.isascii() or len(raw) > 40:
            raise ValueError
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not an ISO date and time like 2026-12-01T09:00") from None
    if not YEARS[0] <= moment.year <= YEARS[1]:
        raise InvalidInput(f"{what} {text!r} is out of range: years {YEARS[0]} to {YEARS[1]}")
    if moment.tzinfo is not None:
        return moment.timestamp()
    moment = moment.replace(microsecond=0)
    first = moment.replace(tzinfo=zone, fold=0)
    second = moment.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        shown = moment.isoformat(timespec="minutes")
        if _round_trip(first, zone) != moment or _round_trip(second, zone) != moment:
            jump = localize_first(moment, zone)
            raise InvalidInput(
                f"{what} {shown} does not exist in {zone.key}: the clocks jump over it at "
                f"{format_instant(jump, zone)} (DST); give another time")
        offsets = " or ".join(f"{shown}{_offset_text(d.utcoffset())}" for d in (first, second))
        raise InvalidInput(f"{what} {shown} happens twice in {zone.key} (DST ends): say which, with an "
                           f"offset: {offsets}")
    return localize_first(moment, zone)


def _round_trip(moment: datetime, zone: ZoneInfo) -> datetime:
    """The wall time that `moment`'s instant really shows in `zone` (differs inside a DST gap)."""
    return moment.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None)


def _offset_text(delta) -> str:  # delta: a timedelta
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def upcoming(schedule: Schedule, after: float, count: int) -> list[float]:
    """The next `count` fire instants strictly after `after`."""
    out: list[float] = []
    t = after
    while len(out) < count:
        nxt = schedule.next_after(t)
        if nxt is None:
            break
        out.append(nxt)
        t = nxt
    return out


def check_fires(schedule: Schedule, now: float) -> None:
    """Refuse a schedule that will never fire again: a past one-shot, an impossible date."""
    if isinstance(schedule, RebootSchedule):
        return
    if schedule.next_after(now) is None:
        if isinstance(schedule, AtSchedule):
            raise InvalidInput(f"one-shot time {schedule.text!r} is in the past")
        raise InvalidInput(f"schedule {schedule.text!r} never fires (no matching date within ten years)")
