"""A cumulative histogram, as Prometheus counts one: upper bounds, counts per bound, sum, count.
Kept by the daemon in memory (fire latency, tick lock hold) and written in its heartbeat, from
which `hermes-cron metrics` exposes it. Pure code."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

FIRE_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOCK_HOLD = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Histogram:
    """Counts of values by upper bound (the last one +Inf), with their sum: a Prometheus histogram."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bound, not cumulative; the last one is +Inf
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[float, int]]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            out.append((bound, running))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": self.counts, "sum": round(self.total, 6), "count": self.n}

    @classmethod
    def from_dict(cls, d: Any) -> Histogram | None:
        try:
            h = cls(tuple(float(b) for b in d["bounds"]), [int(c) for c in d["counts"]], float(d["sum"]),
                    int(d["count"]))
        except (KeyError, TypeError, ValueError):
            return None
        return h if len(h.counts) == len(h.bounds) + 1 else None
