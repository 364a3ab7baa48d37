"""Time zones: loading IANA names, finding the machine's zone, and a zone's offset changes.

Pure apart from reading the tz database. Instants are POSIX timestamps (float seconds, UTC).
"""

from __future__ import annotations

import bisect
import os
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hermes_cron.errors import InvalidInput

EPOCH = datetime(1970, 1, 1)
_STEP = 6 * 3600  # no offset change in the tz database comes closer than this to another
_CHUNK = 366 * 86400


@lru_cache(maxsize=None)
def load_zone(name: str) -> ZoneInfo:
    """The zone for an IANA name; InvalidInput if there is no such zone."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)") from None


def local_zone_name() -> str:
    """The machine's zone as an IANA name: $TZ, then /etc/localtime, then /etc/timezone, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and not tz.startswith("/"):
        try:
            load_zone(tz)
            return tz
        except InvalidInput:
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "/zoneinfo/"
        if marker in target:
            name = target.split(marker, 1)[1]
            load_zone(name)
            return name
    except (OSError, InvalidInput):
        pass
    try:
        with open("/etc/timezone") as f:
            name = f.read().strip()
        load_zone(name)
        return name
    except (OSError, InvalidInput):
        return "UTC"


def offset_at(zone: ZoneInfo, ts: float) -> int:
    """The zone's UTC offset, in whole seconds, at instant `ts`."""
    off = datetime.fromtimestamp(ts, zone).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def wall(ts: float, offset: int) -> datetime:
    """The naive wall-clock time that instant `ts` shows under `offset`."""
    return EPOCH + timedelta(seconds=ts + offset)


def instant(wall_time: datetime, offset: int) -> float:
    """The instant at which a clock running at `offset` shows `wall_time` (naive)."""
    return (wall_time - EPOCH).total_seconds() - offset


class Timeline:
    """The instants at which one zone's offset changes, found by probing and cached as found."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self._transitions: list[float] = []
        self._lo: float | None = None
        self._hi: float | None = None

    def offset(self, ts: float) -> int:
        return offset_at(self.zone, ts)

    def _scan(self, lo: float, hi: float) -> list[float]:
        found = []
        t, off = lo, self.offset(lo)
        while t < hi:
            nxt = min(t + _STEP, hi)
            noff = self.offset(nxt)
            if noff != off:
                a, b = int(t), int(nxt)  # offset(a) == off, offset(b) != off
                while b - a > 1:
                    mid = (a + b) // 2
                    if self.offset(mid) == off:
                        a = mid
                    else:
                        b = mid
                found.append(float(b))
            t, off = nxt, noff
        return found

    def _cover(self, lo: float, hi: float) -> None:
        if self._lo is None:
            start = lo - lo % _STEP
            self._lo, self._hi = start, start
        if lo < self._lo:
            new_lo = min(lo, self._lo - _CHUNK)
            self._transitions[:0] = self._scan(new_lo, self._lo)
            self._lo = new_lo
        if hi > self._hi:
            new_hi = max(hi, self._hi + _CHUNK)
            self._transitions.extend(self._scan(self._hi, new_hi))
            self._hi = new_hi

    def last_transition(self, ts: float, window: float) -> float | None:
        """The latest offset change in (ts - window, ts], if any."""
        self._cover(ts - window, ts + 1)
        i = bisect.bisect_right(self._transitions, ts)
        if i and self._transitions[i - 1] > ts - window:
            return self._transitions[i - 1]
        return None

    def next_transition(self, ts: float, window: float) -> float | None:
        """The first offset change in (ts, ts + window], if any."""
        self._cover(ts, ts + window)
        i = bisect.bisect_right(self._transitions, ts)
        if i < len(self._transitions) and self._transitions[i] <= ts + window:
            return self._transitions[i]
        return None


@lru_cache(maxsize=None)
def timeline(zone: ZoneInfo) -> Timeline:
    return Timeline(zone)


def localize_first(wall_time: datetime, zone: ZoneInfo) -> float:
    """The instant for a naive wall time under the fixed-time DST rule: a time the clock shows
    twice means its first occurrence; a time the clock skips means the moment of the jump."""
    first = wall_time.replace(tzinfo=zone, fold=0).timestamp()
    second = wall_time.replace(tzinfo=zone, fold=1).timestamp()
    candidate = min(first, second)
    if wall(candidate, offset_at(zone, candidate)) == wall_time:
        return candidate
    # In a gap: fold=0 reads the wall time with the offset from before the jump, which puts
    # it just after the jump. The jump itself is the latest transition before that.
    jump = timeline(zone).last_transition(max(first, second), 86400)
    return jump if jump is not None else candidate


def format_instant(ts: float, zone: ZoneInfo) -> str:
    """`2027-03-28 03:00:00+02:00` style: the wall time in `zone` with its UTC offset."""
    return datetime.fromtimestamp(ts, zone).isoformat(sep=" ", timespec="seconds")
