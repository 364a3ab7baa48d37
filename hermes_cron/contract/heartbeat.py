"""`.ticker_heartbeat`: what the daemon publishes about its health, and how readers judge it.
Written atomically (JSON) by the daemon at start and every N ticks; read by `status` and the
watchdog, which need no other configuration: the heartbeat says how often it is written.
"""

from __future__ import annotations

from collections import namedtuple

from hermes_cron.contract.files import atomic_write, read_small
from hermes_cron.logic.jsondata import json_object

HEARTBEAT_VERSION = 1
STALE_FACTOR = 2.0  # a heartbeat that hasn't moved for this many heartbeat intervals is stale
DEFAULT_INTERVAL = 300.0  # assumed when a heartbeat doesn't say (60 s ticks x 5)


# The records here are named tuples, not dataclasses: `status` reads them, and importing
# dataclasses (with inspect) costs it 8 ms. For the same reason the heartbeat is read by
# json_lite, and json and re are imported where they are used (writing; a foreign heartbeat).

class TickError(namedtuple("TickError", "time kind message")):
    """The last tick's failure: when (float), its kind and message (str)."""

    __slots__ = ()


class LockWait(namedtuple("LockWait", "since holder_pid holder_command")):
    """The daemon's ticks are waiting for the tick lock, held by another process (another
    ticker: the Hermes agent's own, a library caller): contention, not failure. Since when
    (float), and the holder's pid and command, if known."""

    __slots__ = ()


class ForeignHeartbeat(namedtuple("ForeignHeartbeat", "time pid")):
    """A heartbeat file hermes-cron did not write: a bare epoch, or "<epoch> <pid>" (as a build of
    the Hermes agent with a heartbeat of its own writes under the same name)."""

    __slots__ = ()


_FOREIGN = r"\s*([0-9]{1,12}(?:\.[0-9]{1,9})?)(?:\s+([0-9]{1,10}))?\s*"


_FIELDS = (
    "time",  # float: when it was written (wall clock)
    "pid",  # int
    "pid_start",  # int: the daemon's start time in clock ticks since boot: pid and start name it
    "boot_id",  # str
    "ticks",  # int: scheduled ticks so far
    "tick_interval",  # float
    "heartbeat_every",  # int
    "interval_s",  # float: time between two heartbeats: tick_interval x heartbeat_every
    "last_ok_tick",  # float | None
    "last_error",  # TickError | None
    "consecutive_failures",  # int: ticks failed in a row (0: the last tick succeeded)
    "running",  # int: runs in flight
    "next_due",  # dict | None: {"job", "at"}
    "started_at",  # float
    "home",  # str
    "version",  # str
    "lock_wait",  # LockWait | None (default None)
    "tick_failures",  # int: ticks that failed since the daemon started (default 0)
    "claims",  # int: runs claimed since the daemon started (default 0)
    "histograms",  # dict | None: {"fire_latency_seconds": ..., "lock_hold_seconds": ...} (default None)
)


class Heartbeat(namedtuple("Heartbeat", _FIELDS, defaults=(None, 0, 0, None))):
    __slots__ = ()

    @property
    def last_tick_failed(self) -> bool:
        """The last tick failed, or none has succeeded yet while nothing held it up (`status`
        says "unhealthy"). Waiting for another ticker's lock is not failing."""
        return self.consecutive_failures > 0 or (self.last_ok_tick is None and self.lock_wait is None)

    def failing_for(self, threshold: float) -> bool:
        """Ticks have been failing for `threshold` or longer (the watchdog's "failing": alive,
        but a restart is due)."""
        last_ok = self.last_ok_tick if self.last_ok_tick is not None else self.started_at
        return self.consecutive_failures > 0 and self.time - last_ok >= threshold

    def to_json(self) -> bytes:
        import json

        d = self._asdict()
        for name in ("last_error", "lock_wait"):
            if d[name] is not None:
                d[name] = d[name]._asdict()
        return (json.dumps({"version_format": HEARTBEAT_VERSION, **d}, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes | None) -> Heartbeat | None:
        """The heartbeat in `raw`, or None if it isn't one we can read: readers treat that like
        a missing heartbeat (a daemon that never wrote a good one)."""
        d = json_object(raw)
        if d is None:
            return None
        err = d.get("last_error")
        wait = d.get("lock_wait")
        try:
            values = {name: d.get(name) for name in cls._fields}
            values["last_error"] = TickError(float(err["time"]), str(err["kind"]), str(err["message"])) \
                if isinstance(err, dict) else None
            values["lock_wait"] = LockWait(float(wait["since"]), _int_or_none(wait.get("holder_pid")),
                                           _str_or_none(wait.get("holder_command"))) \
                if isinstance(wait, dict) else None
            for name in ("time", "tick_interval", "interval_s", "started_at"):
                values[name] = float(values[name])
            for name in ("pid", "pid_start", "ticks", "heartbeat_every", "consecutive_failures", "running"):
                values[name] = int(values[name])
            if values["last_ok_tick"] is not None:
                values["last_ok_tick"] = float(values["last_ok_tick"])
            for name in ("boot_id", "home", "version"):
                values[name] = str(values[name])
            for name in ("tick_failures", "claims"):  # written since 0.2: absent from older heartbeats
                values[name] = int(values[name] or 0)
            if not isinstance(values["histograms"], dict):
                values["histograms"] = None
        except (KeyError, TypeError, ValueError):
            return None
        return cls(**values)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value[:300] if isinstance(value, str) else None


def foreign(raw: bytes | None) -> ForeignHeartbeat | None:
    """The heartbeat another ticker wrote in the file, if that is what it holds."""
    if not raw:
        return None
    import re

    try:
        m = re.fullmatch(_FOREIGN, raw.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if m is None:
        return None
    return ForeignHeartbeat(float(m.group(1)), int(m.group(2)) if m.group(2) else None)


def stale_threshold(hb: Heartbeat | None) -> float:
    """How long a heartbeat may stand still before it counts as stale: STALE_FACTOR times the
    interval the heartbeat itself declares."""
    interval = hb.interval_s if hb is not None else 0.0
    return STALE_FACTOR * (interval if interval > 0 else DEFAULT_INTERVAL)


def write_heartbeat(path: str, hb: Heartbeat) -> None:
    """Replaced whole (readers see the old or the new one), not flushed to disk: it says the
    daemon is alive now, which a power cut makes moot either way (the two fsyncs were most of
    an idle daemon's disk flushes)."""
    atomic_write(path, hb.to_json(), durable=False)


def read_heartbeat(path: str, owner: int | None = None) -> Heartbeat | None:
    return Heartbeat.from_json(read_small(path, owner=owner))


def read_any_heartbeat(path: str, owner: int | None = None) -> Heartbeat | ForeignHeartbeat | None:
    """Ours, or one another ticker wrote in the same file, or None."""
    raw = read_small(path, owner=owner)
    return Heartbeat.from_json(raw) or foreign(raw)
