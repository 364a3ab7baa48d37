"""The life of a run, as data: its states, its outcomes, the one table of legal transitions, and
the result its supervisor writes. Pure: no files, no processes, no clock.

    CLAIMED --hand over--> HANDED --job started--> RUNNING --ended--> DONE
       |                     |                                          ^
       +---------------------+---- cancelled, skipped, missed, lost ----+

- CLAIMED: recorded under the tick lock, for one slot (or a trigger); no process has it yet.
- HANDED: given to a supervisor, which starts it at its slot once it holds the start token.
- RUNNING: the supervisor reported that the job started (when, and its pid).
- DONE: over, with an Outcome. Nothing leaves DONE.

A run recorded with an outcome at once (a skipped or missed slot) is inserted DONE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from hermes_cron.logic.jsondata import json_object


class RunState(StrEnum):
    CLAIMED = "claimed"
    HANDED = "handed"
    RUNNING = "running"
    DONE = "done"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # exited non-zero, killed by a signal, or could not be started
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"  # stopped, replaced, cancelled after hand-over, or lost with its supervisor
    SKIPPED = "skipped"  # not run: overlap policy, or paused/removed before it started
    MISSED = "missed"  # one record for slots that passed unrun
    LOST = "lost"  # shared store: its host stopped renewing the run's lease (dead, frozen or cut off)

    @property
    def ran(self) -> bool:
        """Whether a run with this outcome may have started its job (it has output to show)."""
        return self not in (Outcome.SKIPPED, Outcome.MISSED)

    @property
    def failing(self) -> bool:
        return self in (Outcome.FAILED, Outcome.TIMED_OUT, Outcome.INTERRUPTED, Outcome.LOST)


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    REBOOT = "reboot"


OPEN = (RunState.CLAIMED, RunState.HANDED, RunState.RUNNING)

# to-state -> the states a run may be in to move there
_FROM: dict[RunState, tuple[RunState, ...]] = {
    RunState.CLAIMED: (),  # only by insertion
    RunState.HANDED: (RunState.CLAIMED,),
    # RUNNING from CLAIMED too: a run adopted by a daemon that never saw its hand-over
    RunState.RUNNING: (RunState.CLAIMED, RunState.HANDED),
    RunState.DONE: OPEN,
}


class IllegalTransition(ValueError):
    pass


def allowed_from(to: RunState) -> tuple[RunState, ...]:
    """The states a run may move to `to` from (the store conditions its update on these)."""
    return _FROM[to]


def transition(current: RunState, to: RunState) -> RunState:
    """`to`, if a run in `current` may move there; IllegalTransition otherwise."""
    if current not in _FROM[to]:
        raise IllegalTransition(f"a run can't go from {current.value} to {to.value}")
    return to


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _text(value: object, limit: int = 4000) -> str | None:
    return value[:limit] if isinstance(value, str) else None


@dataclass(frozen=True)
class RunResult:
    """How a run ended: what its supervisor writes to result.json, or what whoever settles a run
    without one records. Times are epoch seconds."""

    outcome: Outcome
    ended_at: float
    started_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    job_pid: int | None = None
    job_start: int | None = None
    output: str | None = None
    output_bytes: int | None = None
    output_truncated: bool = False
    leftover_processes: bool = False

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes | None) -> RunResult | None:
        """The result in a result file, or None if it isn't one (a file of ours, but never
        trusted for its types: a wrong field is dropped, a missing outcome makes it no result)."""
        d = json_object(raw)
        if d is None:
            return None
        try:
            outcome = Outcome(d.get("outcome", d.get("status")))
        except ValueError:
            return None
        ended = _number(d.get("ended_at"))
        if ended is None:
            return None
        return cls(outcome=outcome, ended_at=ended, started_at=_number(d.get("started_at")),
                   exit_code=_integer(d.get("exit_code")), signal=_integer(d.get("signal")),
                   reason=_text(d.get("reason")), job_pid=_integer(d.get("job_pid")),
                   job_start=_integer(d.get("job_start")), output=_text(d.get("output")),
                   output_bytes=_integer(d.get("output_bytes")),
                   output_truncated=d.get("output_truncated") is True,
                   leftover_processes=d.get("leftover_processes") is True)


def exit_status(outcome: Outcome | None, exit_code: int | None, sig: int | None) -> int:
    """The exit status a command reports for a run (`trigger --wait`): 0, the job's own status,
    128+signal, 124 for a timeout (as timeout(1)), 75 for a skip (EX_TEMPFAIL), else 1."""
    if outcome is Outcome.SUCCEEDED:
        return 0
    if outcome is Outcome.TIMED_OUT:
        return 124
    if outcome is Outcome.SKIPPED:
        return 75
    if exit_code is not None:
        return exit_code
    if sig is not None:
        return 128 + sig
    return 1
