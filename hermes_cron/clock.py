"""The one seam for reading clocks, so tests can hand in their own."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Wall time (UTC POSIX seconds), monotonic time, and boot time (monotonic + suspend)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def boottime(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)


SYSTEM = Clock()
