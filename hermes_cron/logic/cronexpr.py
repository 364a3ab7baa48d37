"""Cron expressions: parsing and wall-clock matching. Pure code, no time zones, no clock.

Supported: 5 fields (minute hour day-of-month month day-of-week) or 6 fields with seconds
first (second minute hour day-of-month month day-of-week); `*`, `?` (as `*` in the day
fields), lists, ranges, steps, month and weekday names, weekday 7 as Sunday, the macros, and
the hashed form `H`, `H/step`, `H(a-b)`, `H(a-b)/step`, spread by a stable hash of the job's
name. Day-of-month and day-of-week combine with the Vixie rule: if either field starts with
`*`, both must match; otherwise either may.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from hermes_cron.errors import InvalidInput

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                         "dec"), 1)}
_LENGTHS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def month_days(year: int, month: int) -> int:
    """How many days `month` of `year` has (the calendar module does the same, and costs the
    daemon 0.3 MB of memory with the locale module it imports)."""
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _LENGTHS[month - 1]
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


@dataclass(frozen=True)
class _Field:
    """One field of a cron expression: its name, range, names for its values, and H's range."""

    name: str
    lo: int
    hi: int
    names: dict[str, int] | None = None
    hash_lo: int | None = None  # H in day-of-month spreads over 1-28 so every month has the day
    hash_hi: int | None = None


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31, hash_hi=28)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day-of-week", 0, 7, _DAYS, hash_hi=6)

MAX_FIELD = 200  # characters in one field
MAX_STEP = 9999
_ITEM = re.compile(r"^(?P<base>[^/]+)(?:/(?P<step>[^/]+))?$")
_HASHED = re.compile(r"^H(?:\((?P<a>[^-()]+)-(?P<b>[^-()]+)\))?$", re.IGNORECASE)
_LAST_DOW = re.compile(r"^(\w{1,3})L$", re.IGNORECASE)  # 5L, friL: the month's last Friday
_NTH_DOW = re.compile(r"^(\w{1,3})#(.+)$", re.IGNORECASE)  # 1#1, mon#1: its first Monday
TZ_PREFIX = re.compile(r"^(CRON_TZ|TZ)=(\S+)\s+(.+)$")


def stable_hash(text: str) -> int:
    """FNV-1a, 64 bit: the same on every machine and Python run, unlike hash()."""
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: the allowed values of each field, sorted."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    doms: tuple[int, ...]
    months: tuple[int, ...]
    dows: tuple[int, ...]
    dom_star: bool
    dow_star: bool
    wildcard: bool  # minute or hour field starts with '*': follows the clock across DST changes
    has_seconds: bool
    dom_last: bool = False  # L in the day of month: the month's last day
    dow_last: tuple[int, ...] = ()  # 5L: the month's last Friday (0 = Sunday)
    dow_nth: tuple[tuple[int, int], ...] = ()  # 1#2: the month's second Monday, as (weekday, n)
    _dom_set: frozenset[int] = field(init=False, repr=False, compare=False)
    _dow_set: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_dom_set", frozenset(self.doms))
        object.__setattr__(self, "_dow_set", frozenset(self.dows))

    def day_matches(self, year: int, month: int, day: int) -> bool:
        weekday = date(year, month, day).isoweekday() % 7
        days = month_days(year, month) if (self.dom_last or self.dow_last) else 0
        dom_ok = day in self._dom_set or (self.dom_last and day == days)
        dow_ok = weekday in self._dow_set or (weekday in self.dow_last and day + 7 > days) \
            or (weekday, (day - 1) // 7 + 1) in self.dow_nth
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def next_wall(self, start: datetime, before: datetime) -> datetime | None:
        """The first naive wall time >= `start` (rounded up to the resolution) that matches,
        or None if there is none before `before`."""
        if start.microsecond:
            start = start.replace(microsecond=0) + timedelta(seconds=1)
        if not self.has_seconds and start.second:
            start = start.replace(second=0) + timedelta(minutes=1)
        y, mo, d, h, mi, s = start.year, start.month, start.day, start.hour, start.minute, start.second
        while True:
            if y > before.year:
                return None
            i = bisect.bisect_left(self.months, mo)
            if i == len(self.months):
                y, mo, d, h, mi, s = y + 1, self.months[0], 1, 0, 0, 0
                continue
            if self.months[i] != mo:
                mo, d, h, mi, s = self.months[i], 1, 0, 0, 0
            if d > month_days(y, mo):
                y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
                d, h, mi, s = 1, 0, 0, 0
                continue
            if not self.day_matches(y, mo, d):
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            i = bisect.bisect_left(self.hours, h)
            if i == len(self.hours):
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if self.hours[i] != h:
                h, mi, s = self.hours[i], 0, 0
            i = bisect.bisect_left(self.minutes, mi)
            if i == len(self.minutes):
                h, mi, s = h + 1, 0, 0
                if h == 24:
                    d, h = d + 1, 0
                continue
            if self.minutes[i] != mi:
                mi, s = self.minutes[i], 0
            i = bisect.bisect_left(self.seconds, s)
            if i == len(self.seconds):
                mi, s = mi + 1, 0
                if mi == 60:
                    h, mi = h + 1, 0
                    if h == 24:
                        d, h = d + 1, 0
                continue
            found = datetime(y, mo, d, h, mi, self.seconds[i])
            return found if found < before else None


def parse_cron(text: str, hash_key: str = "") -> CronSpec:
    """Parse a cron expression or macro; raise InvalidInput naming the field at fault."""
    raw = " ".join(text.split())
    if TZ_PREFIX.match(raw):
        raise InvalidInput(f"{raw!r}: a {raw.split('=', 1)[0]}= prefix is not read here; give the zone with --tz "
                           "(hermes-cron add and edit take CRON_TZ=ZONE in front of the expression and move it "
                           "there)")
    expr = MACROS.get(raw.lower(), raw)
    if expr.startswith("@"):
        raise InvalidInput(
            f"unknown macro {raw!r} (known: {', '.join(sorted(MACROS))}, @reboot)"
        )
    parts = expr.split(" ")
    if len(parts) == 5:
        parts = ["0", *parts]
        has_seconds = False
    elif len(parts) == 6:
        has_seconds = True
    else:
        raise InvalidInput(
            f"cron expression {raw!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (second first)"
        )
    fields = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)
    for part, fld in zip(parts, fields):
        if len(part) > MAX_FIELD:
            raise InvalidInput(f"{fld.name} field {part[:20]!r}... in {raw[:40]!r} is longer than {MAX_FIELD} "
                               "characters")
    dom_last, dow_last, dow_nth = False, [], []
    plain = list(parts)
    for index, fld in ((3, _DOM), (5, _DOW)):
        rest = []
        for item in parts[index].split(","):
            if fld is _DOM and item.upper() == "L":
                dom_last = True
            elif fld is _DOW and (m := _LAST_DOW.match(item)):
                dow_last.append(_weekday(m.group(1), item, raw))
            elif fld is _DOW and (m := _NTH_DOW.match(item)):
                n = m.group(2)
                if not _digits(n) or not 1 <= int(n) <= 5:
                    raise InvalidInput(f"day-of-week field {item!r} in {raw!r}: the week in '#' is 1 to 5")
                dow_nth.append((_weekday(m.group(1), item, raw), int(n)))
            else:
                rest.append(item)
        plain[index] = ",".join(rest)
    values = [
        _parse_field(part, fld, f"{hash_key}\0{index}", raw) if part else ()
        for index, (part, fld) in enumerate(zip(plain, fields))
    ]
    dows = tuple(sorted({0 if d == 7 else d for d in values[5]}))
    return CronSpec(
        text=raw,
        seconds=values[0],
        minutes=values[1],
        hours=values[2],
        doms=values[3],
        months=values[4],
        dows=dows,
        dom_star=parts[3].startswith(("*", "?")),
        dow_star=parts[5].startswith(("*", "?")),
        wildcard=parts[1].startswith("*") or parts[2].startswith("*"),
        has_seconds=has_seconds,
        dom_last=dom_last,
        dow_last=tuple(sorted(set(dow_last))),
        dow_nth=tuple(sorted(set(dow_nth))),
    )


def seconds_last_reading(text: str, hash_key: str = "") -> str | None:
    """For a 6-field expression, the same fields with the seconds moved first, as croniter reads
    them (seconds LAST), if that reading fires at other times than ours; else None."""
    parts = " ".join(text.split()).split(" ")
    if len(parts) != 6:
        return None
    other = " ".join([parts[5], *parts[:5]])
    try:
        ours, theirs = parse_cron(text, hash_key), parse_cron(other, hash_key)
    except InvalidInput:
        return None
    keys = ("seconds", "minutes", "hours", "doms", "months", "dows", "dom_star", "dow_star", "dom_last", "dow_last",
            "dow_nth")
    return None if all(getattr(ours, k) == getattr(theirs, k) for k in keys) else other


def _parse_field(text: str, fld: _Field, hash_seed: str, whole: str) -> tuple[int, ...]:
    def fail(why: str) -> InvalidInput:
        return InvalidInput(f"{fld.name} field {text!r} in {whole!r}: {why}")

    out: set[int] = set()
    for item in text.split(","):
        m = _ITEM.match(item)
        if not m:
            raise fail(f"{item!r} is not a value, range or step")
        base, step_text = m.group("base"), m.group("step")
        step = 1
        if step_text is not None:
            if not _digits(step_text) or not 1 <= int(step_text) <= MAX_STEP:
                raise fail(f"step {step_text!r} must be a whole number from 1 to {MAX_STEP}")
            step = int(step_text)
        hashed = _HASHED.match(base)
        if base in ("*", "?"):
            if base == "?" and fld not in (_DOM, _DOW):
                raise fail("'?' is only allowed in the day fields")
            lo, hi = fld.lo, fld.hi if fld is not _DOW else 6
        elif hashed:
            if hashed.group("a") is not None:
                lo, hi = _value(hashed.group("a"), fld, fail), _value(hashed.group("b"), fld, fail)
                if lo > hi:
                    raise fail(f"range H({lo}-{hi}) runs backwards")
            else:
                lo = fld.hash_lo if fld.hash_lo is not None else fld.lo
                hi = fld.hash_hi if fld.hash_hi is not None else fld.hi
            h = stable_hash(hash_seed)
            if step_text is None:
                out.add(lo + h % (hi - lo + 1))
                continue
            # The hashed offset within each step; a step longer than the range would put it past
            # the end for some names (never firing): then it is taken within the range.
            offset = h % step
            lo = lo + (offset if lo + offset <= hi else h % (hi - lo + 1))
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, hi = _value(a, fld, fail), _value(b, fld, fail)
            if fld is _DOW and hi == 0 and lo > 0:
                hi = 7  # Sat-Sun, Mon-0: a range ending on Sunday ends on 7, its alias
            if lo > hi:
                raise fail(f"range {base!r} runs backwards")
        else:
            lo = _value(base, fld, fail)
            # N/step runs to the field's end; in the day of week that is Saturday (6), as for
            # */step: 7 is only an alias of Sunday.
            hi = (6 if fld is _DOW else fld.hi) if step_text is not None else lo
        out.update(range(lo, hi + 1, step))
    return tuple(sorted(out))


def _weekday(text: str, item: str, whole: str) -> int:
    def fail(why: str) -> InvalidInput:
        return InvalidInput(f"day-of-week field {item!r} in {whole!r}: {why}")

    return _value(text, _DOW, fail) % 7


def _digits(text: str) -> bool:
    """ASCII digits only, and few of them: str.isdigit() would take '١' and '５'."""
    return 0 < len(text) <= 4 and text.isascii() and text.isdigit()


def _value(text: str, fld: _Field, fail) -> int:
    if fld.names and text.lower() in fld.names:
        return fld.names[text.lower()]
    if not _digits(text):
        known = f" or a name like {next(iter(fld.names)).upper()}" if fld.names else ""
        raise fail(f"{text!r} is not a number (ASCII digits){known}")
    n = int(text)
    if not fld.lo <= n <= fld.hi:
        raise fail(f"{n} is out of range {fld.lo}-{fld.hi}")
    return n
