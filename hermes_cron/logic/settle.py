"""Settling a run that nobody alive answers for: what to do with it, decided from durable facts
alone. Pure: the facts come in (the run's record, its start token, which of its processes are
alive, the time), a decision comes out; the dispatcher gathers the one and carries out the other.

The start token (`runs/JOB/RUNID/start`, created with O_EXCL) is the arbiter: whoever creates
it starts the run, or abandons it, and nobody else ever can. So a run without a token may still
be started (within its misfire grace), and a run with one is never started again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hermes_cron.logic.run import RunState


class Token(Enum):
    """What a run's start token says."""

    NONE = "none"  # no token: nobody started or abandoned the run yet
    SUPERVISOR = "supervisor"  # a supervisor took it to start the run
    ABANDONED = "abandoned"  # taken by a process that gave the run up unstarted
    CANCELLED = "cancelled"  # taken by a pause, removal or stop before the run started
    REPLACED = "replaced"  # taken by a later run (overlap: replace) before this one started
    UNREADABLE = "unreadable"  # there, but not one we can read


class Action(Enum):
    LEAVE = "leave"  # not ours to settle now: its slot hasn't come, or a live process answers for it
    START = "start"  # claimed, never started, still within its misfire grace: take it over and start it
    ABANDON = "abandon"  # claimed, never started, past its grace: take the token, record it interrupted
    WATCH_SUPERVISOR = "watch-supervisor"  # its supervisor lives: take it over and watch it
    WATCH_JOB = "watch-job"  # its supervisor is gone but the job lives: watch the job, enforce its timeout
    CANCEL = "cancel"  # handed to a supervisor that died before starting it: take the token, then record
    INTERRUPT = "interrupt"  # over, with no result: record it interrupted with the reason


@dataclass(frozen=True)
class Facts:
    """What is durably known about a run in flight (not done, and with no result file)."""

    state: RunState  # CLAIMED (not handed to a supervisor yet), HANDED or RUNNING
    token: Token
    token_detail: str  # who took the token (pid, or the run or reason that cancelled it)
    scheduled: float | None
    claimed_at: float
    misfire_grace: float | None  # None: the run has no valid copy of its job
    handed_supervisor_alive: bool  # the supervisor recorded on the run, if any, is alive
    token_supervisor_alive: bool  # the supervisor named in the token, if any, is alive
    job_alive: bool  # the job process recorded by its supervisor is alive
    owned_by_other_live_process: bool  # the run's owner is another process, alive
    now: float  # wall clock
    owner_pid: int | None = None  # for the reasons given
    handed_supervisor_pid: int | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with an unanswered run, and why."""

    action: Action
    reason: str = ""


def settle(f: Facts) -> Decision:
    """What to do with a run in flight that nobody we know of answers for."""
    if f.owned_by_other_live_process:
        return Decision(Action.LEAVE, "another live process answers for it")
    if f.token is Token.NONE:
        return _unstarted(f)
    if f.token is Token.SUPERVISOR:
        if f.token_supervisor_alive:
            return Decision(Action.WATCH_SUPERVISOR)
        if f.job_alive:
            return Decision(Action.WATCH_JOB)
        return Decision(Action.INTERRUPT, f"its supervisor (pid {f.token_detail}) ended without recording the "
                                          "outcome; the exit status is unknown")
    return Decision(Action.INTERRUPT, _token_reason(f.token, f.token_detail))


def _unstarted(f: Facts) -> Decision:
    """No start token: nobody started the run, and whoever takes the token next decides."""
    if f.state is RunState.CLAIMED:
        if f.scheduled is not None and f.scheduled > f.now:
            return Decision(Action.LEAVE, "claimed ahead of its slot")
        if f.misfire_grace is None:
            return Decision(Action.LEAVE, "no valid copy of its job to start")
        late = f.now - (f.scheduled if f.scheduled is not None else f.claimed_at)
        if late <= f.misfire_grace:
            return Decision(Action.START, f"{late:.3f}")
        return Decision(Action.ABANDON, f"claimed by pid {f.owner_pid}, which died before starting it; "
                                        f"{late:.0f} s late is past the misfire grace, so it was not started")
    if f.handed_supervisor_alive:
        return Decision(Action.WATCH_SUPERVISOR, "its supervisor waits for the slot")
    return Decision(Action.CANCEL, f"its supervisor (pid {f.handed_supervisor_pid}) ended before starting it")


def _token_reason(token: Token, detail: str) -> str:
    if token is Token.ABANDONED:
        return f"abandoned by pid {detail}: claimed but never started"
    if token is Token.CANCELLED:
        return f"{detail} before it started"
    if token is Token.REPLACED:
        return f"replaced by run {detail} before it started"
    return "its start token can't be read; the exit status is unknown"


def read_token(token: dict | None, present: bool) -> tuple[Token, str]:
    """The kind of a start token, from its parsed content (None: missing or unreadable)."""
    if token is None:
        return (Token.UNREADABLE, "") if present else (Token.NONE, "")
    if "supervisor_pid" in token or "reaper_pid" in token:  # reaper_pid: written before 0.2
        return Token.SUPERVISOR, str(token.get("supervisor_pid", token.get("reaper_pid")))
    if "abandoned_by" in token:
        return Token.ABANDONED, str(token["abandoned_by"])
    if "cancelled" in token:
        return Token.CANCELLED, str(token["cancelled"])
    if "cancelled_by_run" in token:
        return Token.REPLACED, str(token["cancelled_by_run"])
    return Token.UNREADABLE, ""
