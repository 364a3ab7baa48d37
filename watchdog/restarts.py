"""When to restart: exponential backoff between restarts and a burst limit. Pure: times come in
as arguments. The record is persisted by the caller, so it survives the watchdog's restart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RestartBook:
    """The restarts the watchdog made lately, and the backoff they call for."""

    burst: int = 5  # at most this many restarts ...
    window: float = 1800.0  # ... within this many seconds
    base: float = 2.0  # backoff after the first restart; doubles with each further one
    ceiling: float = 300.0
    times: list[float] = field(default_factory=list)  # wall times of recent restarts
    giving_up: bool = False
    failing_restart: bool = False  # a restart already spent on an alive-but-failing daemon

    def recent(self, now: float) -> list[float]:
        return [t for t in self.times if now - self.window < t <= now + 1]

    def decide(self, now: float) -> tuple[str, float]:
        """('restart', 0), ('backoff', seconds to wait) or ('give-up', seconds until allowed)."""
        recent = self.recent(now)
        if len(recent) >= self.burst:
            return "give-up", recent[0] + self.window - now
        if recent:
            wait = min(self.base * 2 ** (len(recent) - 1), self.ceiling) - (now - recent[-1])
            if wait > 0:
                return "backoff", wait
        return "restart", 0.0

    def record(self, now: float) -> None:
        self.times = self.recent(now) + [now]

    def healthy(self, now: float, stable_for: float) -> None:
        """A healthy heartbeat: stop giving up; once healthy for a while, forget old restarts."""
        self.giving_up = False
        self.failing_restart = False
        if self.times and now - self.times[-1] >= stable_for:
            self.times = []

    def to_dict(self) -> dict[str, Any]:
        return {"times": self.times, "giving_up": self.giving_up, "failing_restart": self.failing_restart}

    def load(self, d: dict[str, Any]) -> None:
        self.times = [float(t) for t in d.get("times") or []]
        self.giving_up = bool(d.get("giving_up"))
        self.failing_restart = bool(d.get("failing_restart"))
