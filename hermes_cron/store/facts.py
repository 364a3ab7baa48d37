"""What `status` reads from a store: plain data in a module of its own, so that `status` loads
none of the store's other code (it must start fast)."""

from __future__ import annotations

TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any


class StatusFacts:
    """What `status` reads from the store, without loading any schedule code. (A plain class:
    importing dataclasses costs `status` 8 ms.)"""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.invalid: dict[str, str] = {}
        self.reconciled_sig: str | None = None
        self.in_flight: list[dict[str, Any]] = []
        self.next: list[dict[str, Any]] = []
        self.recent_failures: list[dict[str, Any]] = []
