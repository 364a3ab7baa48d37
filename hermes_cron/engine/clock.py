"""The one seam for reading clocks, so tests can hand in their own."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Wall time, in UTC POSIX seconds. The daemon reads the time only through this."""

    def time(self) -> float:
        return time.time()


SYSTEM = Clock()
