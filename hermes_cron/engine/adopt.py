"""Settling runs that nobody alive answers for: after a restart, a lost supervisor or a
`stop --jobs`. The facts are gathered here (the run's record, its start token, which of its
processes live), logic/settle.py decides, and the decision is carried out here through the
dispatcher: start it, watch its supervisor or its orphaned job, or record it interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.engine.claims import Claim
from hermes_cron.errors import HermesCronError
from hermes_cron.logic.run import Outcome
from hermes_cron.logic.settle import Action, Facts, Token, settle
from hermes_cron.store.base import RunRecord
from hermes_cron.store.runfiles import CRASH, RunFiles

if TYPE_CHECKING:
    from hermes_cron.engine.dispatch import Dispatcher

DEFAULT_KILL_GRACE = 10.0  # for a run with no valid copy of its job


@dataclass
class Watched:
    """A run this process answers for: through its supervisor, or (when the supervisor is gone)
    through its job, whose timeout we then enforce."""

    run_id: int
    job: str
    kill_grace: float
    supervisor: ProcId | None = None
    orphan: ProcId | None = None
    pidfd: int | None = None
    timeout_at: float | None = None
    kill_at: float | None = None
    timed_out: bool = False
    scheduled: float | None = None  # its slot (the fire latency is measured from it)
    ping: str | None = None  # its job's dead-man's-switch URL (engine/pinger.py)


def facts(d: Dispatcher, run: RunRecord, files: RunFiles, now: float) -> Facts:
    """What is durably known about a run in flight: its record, its token, its processes."""
    token, detail = files.read_token()
    in_token = files.read_supervisor() if token is Token.SUPERVISOR else None
    job = files.read_job_pid() if token is Token.SUPERVISOR else None
    owner = run.owner
    spec = run.job_spec
    return Facts(
        state=run.state, token=token, token_detail=detail, scheduled=run.scheduled,
        claimed_at=run.claimed_at, misfire_grace=spec.misfire_grace if spec is not None else None,
        handed_supervisor_alive=d.os.alive(run.supervisor), token_supervisor_alive=d.os.alive(in_token),
        job_alive=d.os.alive(job), owned_by_other_live_process=owner is not None and owner != d.owner
        and d.os.alive(owner), now=now, owner_pid=run.owner_pid, handed_supervisor_pid=run.supervisor_pid)


def adopt(d: Dispatcher, run: RunRecord, now: float) -> None:
    """Carry out what settle() decides for a run nobody alive answers for."""
    files = d.recorder.files(run.job, run.id)
    decision = settle(facts(d, run, files, now))
    action = decision.action
    if action is Action.LEAVE:
        return
    if action is Action.START:
        job_def = run.job_spec
        if job_def is not None and d.store.take_over(run, d.owner):
            d.log.warning("job.adopted", job=run.job, run_id=run.id, action="start",
                          previous_owner=run.owner_pid, late_s=round(float(decision.reason), 3))
            d.queue.append(Claim(run.id, job_def, run.scheduled, run.trigger, run.replaces))
            d.start_queued()
        return
    if action in (Action.ABANDON, Action.CANCEL):
        try:
            taken = files.take_token({"abandoned_by": d.owner.pid})
        except (OSError, HermesCronError) as e:  # its folder can't be used (a symlink, say)
            d.recorder.finish(run, Outcome.INTERRUPTED, f"{decision.reason}; its folder can't be used: {e}")
            return
        if taken:
            d.recorder.finish(run, Outcome.INTERRUPTED, decision.reason)
        elif action is Action.CANCEL:  # the supervisor took the token a moment ago: settle again
            adopt(d, run, now)
        return
    if action is Action.WATCH_SUPERVISOR:
        supervisor = files.read_supervisor() or run.supervisor
        if supervisor is not None and d.store.take_over(run, d.owner):
            watch_supervisor(d, run, supervisor)
        return
    if action is Action.WATCH_JOB:
        job = files.read_job_pid()
        if job is not None and d.store.take_over(run, d.owner):
            watch_orphan(d, run, job)
        return
    result = files.read_result()  # Action.INTERRUPT, unless the result came meanwhile
    if result is not None:
        d.recorder.record(run, result)
    else:
        d.recorder.finish(run, Outcome.INTERRUPTED, decision.reason)


def after_supervisor(d: Dispatcher, run: RunRecord, supervisor: ProcId | None) -> None:
    """A supervisor we watched has exited and its run is still open: record its result, or find
    out what happened (it crashed, its folder was unusable, it left the job running)."""
    files = d.recorder.files(run.job, run.id)
    result = files.read_result()
    if result is not None:
        d.recorder.record(run, result)
        return
    token, _ = files.read_token()
    in_token = files.read_supervisor()
    crashed = None
    crash = files.read(CRASH)
    if crash is not None:
        text = crash.decode(errors="replace")
        d.log.error("supervisor.crashed", job=run.job, run_id=run.id, traceback=text)
        last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
        crashed = f"its supervisor crashed ({last[:300]}); the exit status is unknown"
    if token is Token.NONE:
        unsafe = files.unsafe()
        if unsafe is not None:
            d.log.error("run.unsafe_folder", job=run.job, run_id=run.id, error=unsafe)
        d.recorder.finish(run, Outcome.INTERRUPTED, f"not started: {unsafe}" if unsafe else
                 crashed or "its supervisor exited before it could start the job")
        return
    if supervisor is None or in_token is None or in_token.pid != supervisor.pid:
        return  # another process holds the start token: recover() settles it
    job = files.read_job_pid()
    if d.os.alive(job):
        assert job is not None
        watch_orphan(d, run, job)
        return
    d.recorder.finish(run, Outcome.INTERRUPTED, crashed or "its supervisor ended without recording the outcome; "
             "the exit status is unknown")


def watch_supervisor(d: Dispatcher, run: RunRecord, supervisor: ProcId) -> None:
    spec = run.job_spec
    w = Watched(run.id, run.job, spec.kill_grace if spec else DEFAULT_KILL_GRACE, supervisor=supervisor)
    watchable = d.watch(w)
    d.log.warning("job.adopted", job=run.job, run_id=run.id, action="watch",
                  supervisor_pid=supervisor.pid, previous_owner=run.owner_pid)
    if not watchable or not d.os.alive(supervisor):
        d.supervisor_gone(run.id)


def watch_orphan(d: Dispatcher, run: RunRecord, job: ProcId) -> None:
    """Watch a job whose supervisor is gone, and enforce its timeout ourselves."""
    spec = run.job_spec
    timeout_at = d.os.started_at(job) + spec.timeout if spec is not None and spec.timeout else None
    w = Watched(run.id, run.job, spec.kill_grace if spec else DEFAULT_KILL_GRACE, orphan=job, timeout_at=timeout_at)
    watchable = d.watch(w)
    d.log.warning("job.adopted", job=run.job, run_id=run.id, action="watch-orphan",
                  job_pid=job.pid, previous_owner=run.owner_pid)
    if not watchable:
        d.unwatch(run.id)
        d.recorder.finish(run, Outcome.INTERRUPTED, "its supervisor died and the job could not be watched")
