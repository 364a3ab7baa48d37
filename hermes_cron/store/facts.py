"""What `status` reads from a store: plain data in a module of its own, so that `status` loads
none of the store's other code (it must start fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StatusFacts:
    """What `status` reads from the store, without loading any schedule code."""

    jobs: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    reconciled_sig: str | None = None
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    next: list[dict[str, Any]] = field(default_factory=list)
    recent_failures: list[dict[str, Any]] = field(default_factory=list)
