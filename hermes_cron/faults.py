"""Fault injection for tests and scripts/chaos.py, off unless $HERMES_CRON_FAULTS is set.

$HERMES_CRON_FAULTS is a comma-separated list of `point=action`, where action is
`raise` (RuntimeError), `raise@N` (only the Nth time), `exit` (BaseException: SystemExit),
or `sleep:SECONDS`. Points: `tick.locked` (inside the tick, lock held), `dispatch.claimed` (after
the claim is saved, before the run starts), `supervisor.start` (in a supervisor, at the slot,
before it takes the run's start token) and `daemon.start` (as the daemon comes up).
"""

from __future__ import annotations

import os
import time

_SPEC = os.environ.get("HERMES_CRON_FAULTS", "")
_PLAN: dict[str, str] = dict(item.split("=", 1) for item in _SPEC.split(",") if "=" in item)
_COUNTS: dict[str, int] = {}


def hit(point: str) -> None:
    """Act on the fault planned for `point`, if any."""
    action = _PLAN.get(point)
    if action is None:
        return
    _COUNTS[point] = _COUNTS.get(point, 0) + 1
    if action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
    elif action == "raise" or (action.startswith("raise@") and _COUNTS[point] == int(action[6:])):
        raise RuntimeError(f"injected fault at {point} (#{_COUNTS[point]})")
    elif action == "exit":
        raise SystemExit(f"injected exit at {point}")
