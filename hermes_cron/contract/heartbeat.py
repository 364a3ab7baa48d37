"""`.ticker_heartbeat`: what the daemon publishes about its health, and how readers judge it.
Written atomically (JSON) by the daemon at start and every N ticks; read by `status` and the
watchdog, which need no other configuration: the heartbeat says how often it is written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from hermes_cron.contract.files import atomic_write, read_small
from hermes_cron.logic.jsondata import json_object

HEARTBEAT_VERSION = 1
STALE_FACTOR = 2.0  # a heartbeat that hasn't moved for this many heartbeat intervals is stale
DEFAULT_INTERVAL = 300.0  # assumed when a heartbeat doesn't say (60 s ticks x 5)


@dataclass(frozen=True)
class TickError:
    time: float
    kind: str
    message: str


@dataclass(frozen=True)
class Heartbeat:
    time: float  # when it was written (wall clock)
    pid: int
    pid_start: int  # the daemon's start time in clock ticks since boot: pid and start name it
    boot_id: str
    ticks: int  # scheduled ticks so far
    tick_interval: float
    heartbeat_every: int
    interval_s: float  # time between two heartbeats: tick_interval x heartbeat_every
    last_ok_tick: float | None
    last_error: TickError | None
    consecutive_failures: int  # ticks failed in a row (0: the last tick succeeded)
    running: int  # runs in flight
    next_due: dict[str, Any] | None  # {"job", "at"}
    started_at: float
    home: str
    version: str

    def stale_threshold(self) -> float:
        return stale_threshold(self)

    @property
    def last_tick_failed(self) -> bool:
        """The last tick failed, or none has succeeded yet (`status` says "unhealthy")."""
        return self.consecutive_failures > 0 or self.last_ok_tick is None

    def failing_for(self, threshold: float) -> bool:
        """Ticks have been failing for `threshold` or longer (the watchdog's "failing": alive,
        but a restart is due)."""
        last_ok = self.last_ok_tick if self.last_ok_tick is not None else self.started_at
        return self.consecutive_failures > 0 and self.time - last_ok >= threshold

    def to_json(self) -> bytes:
        return (json.dumps({"version_format": HEARTBEAT_VERSION, **asdict(self)}, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes | None) -> Heartbeat | None:
        """The heartbeat in `raw`, or None if it isn't one we can read: readers treat that like
        a missing heartbeat (a daemon that never wrote a good one)."""
        d = json_object(raw)
        if d is None:
            return None
        err = d.get("last_error")
        try:
            values = {f.name: d.get(f.name) for f in fields(cls)}
            values["last_error"] = TickError(float(err["time"]), str(err["kind"]), str(err["message"])) \
                if isinstance(err, dict) else None
            for name in ("time", "tick_interval", "interval_s", "started_at"):
                values[name] = float(values[name])
            for name in ("pid", "pid_start", "ticks", "heartbeat_every", "consecutive_failures", "running"):
                values[name] = int(values[name])
            if values["last_ok_tick"] is not None:
                values["last_ok_tick"] = float(values["last_ok_tick"])
            for name in ("boot_id", "home", "version"):
                values[name] = str(values[name])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(**values)


def stale_threshold(hb: Heartbeat | None) -> float:
    """How long a heartbeat may stand still before it counts as stale: STALE_FACTOR times the
    interval the heartbeat itself declares."""
    interval = hb.interval_s if hb is not None else 0.0
    return STALE_FACTOR * (interval if interval > 0 else DEFAULT_INTERVAL)


def write_heartbeat(path: str, hb: Heartbeat) -> None:
    atomic_write(path, hb.to_json())


def read_heartbeat(path: str, owner: int | None = None) -> Heartbeat | None:
    return Heartbeat.from_json(read_small(path, owner=owner))
