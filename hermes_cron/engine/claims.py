"""What a tick hands on (engine/ticker.py makes them): the runs it claimed, to be started once
the tick lock is released, the slots it skipped or found missed, and its report."""

from __future__ import annotations

from dataclasses import dataclass, field

from hermes_cron.logic.jobs import Job
from hermes_cron.logic.run import Trigger


@dataclass(frozen=True)
class Claim:
    """A run recorded as claimed, as the engine passes it on to be started once the tick lock
    is released: its id, the job as claimed, its slot, and the runs it replaces."""

    run_id: int
    job: Job
    scheduled: float | None
    trigger: Trigger
    replaces: tuple[int, ...] = ()
    start_at: float | None = None  # a retry: not before this (else the slot)


@dataclass(frozen=True)
class Skipped:
    """A slot not run because the job's overlap policy skipped it; recorded as run `run_id`."""

    job: str
    slot: float
    run_id: int


@dataclass(frozen=True)
class Missed:
    """Slots of a job that passed unrun (the daemon was down or late): how many, the first and newest."""

    job: str
    count: int
    at_least: bool  # the count was capped
    first: float
    newest: float


@dataclass
class TickReport:
    """What one tick did: its claims, skipped and missed slots, and how long it held the lock."""

    now: float
    claims: list[Claim] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)
    lock_held: float = 0.0
    wall: float = 0.0  # the clock when the tick ran (`now` may be a little ahead of it)
    phases: dict[str, float] = field(default_factory=dict)  # seconds since the lock was taken
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (job, why): entries newly seen invalid
    broken: list[tuple[str, str]] = field(default_factory=list)  # (job, why): jobs whose times can't be computed
    decided_ahead: bool = False  # the due jobs were decided before the lock, and nothing changed since
    quiet: bool = False  # nothing to do, and nobody wrote since the last tick: no transaction was opened
