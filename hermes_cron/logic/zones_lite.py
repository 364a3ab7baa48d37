"""Formatting instants without loading time-zone code (for commands that must start fast)."""

from __future__ import annotations

import time


def utc_iso(ts: float | None) -> str | None:
    """An instant as ISO 8601 UTC with milliseconds, `2026-11-27T09:30:00.000Z`, or None."""
    if ts is None:
        return None
    whole = int(ts // 1)
    ms = int(round((ts - whole) * 1000))
    if ms == 1000:
        whole, ms = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"
