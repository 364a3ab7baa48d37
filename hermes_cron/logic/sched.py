"""Schedule rows as the store keeps them, and the changes reconcile (logic/reconcile.py) makes
to them. Plain data with no imports, so that `status` can read the store without loading
any schedule code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SchedRow:
    """Where one job's schedule stands."""

    job: str
    fingerprint: str
    enabled: bool
    kind: str
    next_run: float | None
    last_slot: float | None
    done: bool
    boot_id: str | None


@dataclass(frozen=True)
class SchedChange:
    """One change reconcile makes to a schedule row ."""

    kind: str  # "insert", "reset" (schedule changed), "enable" (resumed), "set-enabled", "delete"
    job: str
    fingerprint: str = ""
    enabled: bool = True
    sched_kind: str = ""
    next_run: float | None = None
    boot_id: str | None = None  # the boot a new @reboot job was added in: it first runs at the next one
