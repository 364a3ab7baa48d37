"""The store's seam: the records it keeps and the operations the engine and the commands use.

`SqliteStore` (store/sqlite.py, with hermes-cron-jobs.json beside it) is the first implementation; a
second backend (PostgreSQL, for several hosts on one schedule) implements the same protocols.
Every change of a run's state goes through `finish`, `hand_over`, `mark_started` or
`take_over`, each conditioned on the states logic/run.py allows, so an illegal or stale
transition changes nothing and says so (False).
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Hashable, Protocol

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.errors import InvalidInput
from hermes_cron.logic.sched import SchedChange, SchedRow
from hermes_cron.logic.run import OPEN, Outcome, RunResult, RunState, Trigger
from hermes_cron.logic.zones_lite import utc_iso


if TYPE_CHECKING:
    from hermes_cron.logic.jobs import Job


def _proc(pid: int | None, start: int | None) -> ProcId | None:
    return None if pid is None or start is None else ProcId(int(pid), int(start))


@dataclass(frozen=True)
class RunRecord:
    """One run as the store keeps it."""

    id: int
    job: str
    trigger: Trigger
    scheduled: float | None
    state: RunState
    outcome: Outcome | None
    claimed_at: float
    owner_pid: int | None
    owner_start: int | None
    started_at: float | None
    ended_at: float | None
    supervisor_pid: int | None
    supervisor_start: int | None
    job_pid: int | None
    job_start: int | None
    exit_code: int | None
    signal: int | None
    missed_count: int | None
    first_missed: float | None
    reason: str | None
    output: str | None
    output_bytes: int | None
    replaces: tuple[int, ...]
    spec: str | None
    attempt: int = 1  # the attempt of its slot: 2 and on are retries (--retries) or re-runs of a lost run

    @property
    def open(self) -> bool:
        return self.state in OPEN

    @cached_property
    def job_spec(self) -> Job | None:
        """The job as it was when this run was claimed (parsed once); None if the run has no copy,
        or one that is not valid any more (a newer release's limits)."""
        from hermes_cron.logic.jobs import Job  # parsed only when asked: `status` never loads job code

        if not self.spec:
            return None
        try:
            return Job.from_dict(json.loads(self.spec))
        except (InvalidInput, ValueError, TypeError, RecursionError):
            return None

    @property
    def owner(self) -> ProcId | None:
        return _proc(self.owner_pid, self.owner_start)

    @property
    def supervisor(self) -> ProcId | None:
        return _proc(self.supervisor_pid, self.supervisor_start)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """The run as `history --json` shows it."""
        return {
            "id": self.id, "job": self.job, "trigger": str(self.trigger), "scheduled": utc_iso(self.scheduled),
            "state": str(self.state), "status": None if self.outcome is None else str(self.outcome),
            "claimed_at": utc_iso(self.claimed_at), "owner_pid": self.owner_pid,
            "started_at": utc_iso(self.started_at), "ended_at": utc_iso(self.ended_at),
            "supervisor_pid": self.supervisor_pid, "job_pid": self.job_pid, "exit_code": self.exit_code,
            "signal": self.signal, "missed_count": self.missed_count, "first_missed": utc_iso(self.first_missed),
            "reason": self.reason, "output": self.output, "output_bytes": self.output_bytes,
            "duration_s": None if self.duration is None else round(self.duration, 3),
            "replaces": list(self.replaces), "attempt": self.attempt,
        }


@dataclass(frozen=True)
class NewRun:
    """A run to insert: claimed (to be started), or done at once (a skipped or missed slot)."""

    job: str
    trigger: Trigger
    scheduled: float | None
    claimed_at: float
    state: RunState = RunState.CLAIMED
    outcome: Outcome | None = None
    owner: ProcId | None = None
    replaces: tuple[int, ...] = ()
    spec: str | None = None
    missed_count: int | None = None
    first_missed: float | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.state is RunState.DONE) != (self.outcome is not None):
            raise ValueError("a run is inserted claimed without an outcome, or done with one")
        if self.state not in (RunState.CLAIMED, RunState.DONE):
            raise ValueError(f"a run can't be inserted {self.state}")


@dataclass(frozen=True)
class Advance:
    """A job's schedule moving on after a tick's decision."""

    job: str
    next_run: float | None
    last_slot: float | None
    done: bool


@dataclass(frozen=True)
class Request:
    """A `trigger` asking for a run of a job now, not yet served."""

    id: int
    job: str
    requested_at: float


class TickTransaction(Protocol):
    """What the scheduler does under the tick lock, in one transaction of the store."""

    def reconcile_sig(self) -> str | None: ...
    def sched_rows(self, only: set[str] | None = None) -> dict[str, SchedRow]: ...
    def apply_sched_changes(self, changes: list[SchedChange], defs_sig: str, invalid: dict[str, str],
                            at: float | None = None) -> None: ...  # `at`: kept in the job history
    def due(self, now: float) -> list[tuple[str, float]]: ...
    def reboot_due(self, boot_id: str) -> list[str]: ...
    def data_version(self) -> Hashable | None: ...  # as Store.data_version
    def mark_rebooted(self, job: str, boot_id: str) -> None: ...
    def in_flight(self) -> dict[str, list[int]]: ...
    def insert_runs(self, runs: list[NewRun]) -> list[int | None]: ...  # None: that slot was claimed already
    def advance(self, advances: list[Advance]) -> None: ...
    def open_requests(self) -> list[Request]: ...
    def answer_request(self, request_id: int, run_id: int | None, error: str | None) -> None: ...


class Store(Protocol):
    """Runs and schedule state, for the engine and the commands."""

    def close(self) -> None: ...
    def idle(self) -> bool: ...  # housekeeping when nothing is due (SQLite: a WAL checkpoint); True if done
    def tick(self, flush_later: bool = False) -> AbstractContextManager[TickTransaction]: ...
    def flush(self) -> None: ...  # make a tick(flush_later=True)'s commit durable
    def data_version(self) -> Hashable | None: ...  # changes whenever anyone commits a change; None: can't tell
    def in_flight(self) -> dict[str, list[int]]: ...
    # schedule
    def sched_rows(self) -> dict[str, SchedRow]: ...
    def due(self, now: float) -> list[tuple[str, float]]: ...
    def next_due(self) -> float | None: ...
    def due_count(self, at: float) -> int: ...
    def upcoming(self, limit: int) -> list[tuple[str, float]]: ...
    # runs
    def run(self, run_id: int) -> RunRecord | None: ...
    def open_runs(self) -> list[RunRecord]: ...
    def history(self, job: str | None, limit: int, outcomes: tuple[Outcome, ...] = ()) -> list[RunRecord]: ...
    def latest_started(self, job: str) -> RunRecord | None: ...
    def next_run(self, job: str) -> float | None: ...  # the job's next slot (None: none, or unknown)
    def insert_retry(self, job: str, trigger: str, scheduled: float | None, attempt: int, claimed_at: float,
                     owner: ProcId | None, spec: str | None) -> int | None: ...  # None: that attempt exists
    def last_outcomes(self) -> dict[str, tuple[Outcome | None, float | None]]: ...
    def counts(self) -> dict[tuple[str, str], int]: ...  # runs ended by (job, outcome), never pruned
    def hand_over(self, handed: list[tuple[int, ProcId | None]]) -> None: ...
    def mark_started(self, started: list[tuple[int, float, ProcId | None]]) -> None: ...
    def take_over(self, run: RunRecord, owner: ProcId) -> bool: ...
    def finish(self, run_id: int, result: RunResult, keep: int | None, hold: bool = False) -> tuple[bool, list[int]]: ...
    # the journal (store/journal.py): notifications, up-times, the definitions' history
    def note_runs(self, plan: Any, now: float) -> int: ...
    def release_note(self, run_id: int) -> None: ...
    def unnoted(self) -> bool: ...  # any ended run still to be noted (or held for its retry)
    def open_events(self) -> list[Any]: ...
    def events(self, ids: Any) -> list[Any]: ...
    def events_of_runs(self, run_ids: list[int]) -> dict[int, list[Any]]: ...
    def claim_event(self, event_id: int, host: str, runner: ProcId, now: float) -> bool: ...
    def end_event(self, event_id: int, runner: ProcId | None, now: float, status: str, exit_code: int | None,
                  detail: str | None) -> bool: ...
    def daemon_started(self, node: str, me: ProcId, now: float, last_seen: float | None = None) -> int: ...
    def daemon_seen(self, row_id: int, now: float) -> None: ...
    def daemon_stopped(self, row_id: int, now: float) -> None: ...
    def uptimes(self, since: float | None = None) -> list[Any]: ...
    def job_history(self, job: str) -> list[Any]: ...
    # trigger requests
    def add_request(self, job: str, now: float) -> int: ...
    def request(self, request_id: int) -> tuple[bool, int | None, str | None] | None: ...
