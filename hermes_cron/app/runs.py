"""Jobs at work, as the commands use them: run one now (`trigger`), follow a run, stop the runs
in flight, and read the history and output.

Reads don't write. A run that finished while no daemon watched it has its result file waiting
in its folder; `history`, `logs`, `list` and `show` show that result (waiting_results), read
only, and the store records it when a daemon next runs (its recovery step), when `trigger`
claims without a daemon (it records first, so the overlap policy sees what really runs), or
when a command that ends runs itself (`stop --jobs`) records what it waited for.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time

from hermes_cron.app.control import lookup
from hermes_cron.contract.logs import Silent
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId, boot_id
from hermes_cron.engine.dispatch import Dispatcher
from hermes_cron.engine.recorder import Recorder
from hermes_cron.engine.stopping import request_stop
from hermes_cron.engine.ticker import Scheduler
from hermes_cron.errors import DaemonError, InvalidInput, JobNotFound
from hermes_cron.logic.hermes import is_hermes_name
from hermes_cron.logic.run import Outcome, RunState, transition
from hermes_cron.store import definitions
from hermes_cron.store.base import RunRecord, Store
from hermes_cron.store.runfiles import RunFiles
from hermes_cron.store.opening import open_store


def _files(home: Home, run: RunRecord) -> RunFiles:
    return RunFiles(home.run_dir(run.job, run.id))


def waiting_results(home: Home, runs: list[RunRecord]) -> list[RunRecord]:
    """The runs as they stand, with the result of each open run whose result file waits shown as
    its end, and a start its supervisor wrote down shown as running (read, not recorded)."""
    out = []
    for run in runs:
        result = _files(home, run).read_result() if run.open else None
        started = _files(home, run).read_job() if result is None and run.state is RunState.HANDED else None
        if started is not None and started[1] is not None:
            run = dataclasses.replace(run, state=transition(run.state, RunState.RUNNING), started_at=started[1],
                                      job_pid=started[0].pid)
        if result is not None:
            run = dataclasses.replace(
                run, state=transition(run.state, RunState.DONE), outcome=result.outcome, ended_at=result.ended_at,
                started_at=result.started_at or run.started_at, exit_code=result.exit_code, signal=result.signal,
                reason=result.reason, job_pid=result.job_pid or run.job_pid, output=result.output,
                output_bytes=result.output_bytes)
        out.append(run)
    return out


def record_ended(home: Home, store: Store, run: RunRecord, outcome: Outcome, reason: str) -> None:
    """Record a run this command ended itself (cancelled before it started)."""
    Recorder(home, store, Silent()).finish(run, outcome, reason)


def trigger(home: Home, name: str, answer_timeout: float = 10.0, wait: bool = True) -> tuple[int, bool]:
    """Run a job now through the same claim path as a scheduled run (so the overlap policy
    holds). With a daemon running, it is asked to dispatch at once (SIGUSR1). Without one, this
    process dispatches it: with `wait`, in the foreground, recording it; without, detached (its
    supervisor outlives us, and the result waits in the run's folder for the next daemon).

    Returns (run id, whether no daemon took it: this process dispatched it)."""
    known(home, name, running=True)
    home.ensure()  # the run's folder is made here, on the shared store too
    store = open_store(home)
    try:
        request_id = store.add_request(name, time.time())
        found = lookup(home)
        if found.proc is None:
            me = ProcId.me()
            # No daemon records what finished: this command, about to claim (and apply the
            # overlap policy), records it first, as hermes_cron.tick() does.
            Recorder(home, store, Silent()).collect()
            report = Scheduler(home, store, me, boot_id()).claim(only_requests={request_id})
            if report.claims and not wait:
                Dispatcher(home, store, me, Silent(), detach=True).submit(report.claims)
            elif report.claims:
                dispatcher = Dispatcher(home, store, me, Silent())
                dispatcher.submit(report.claims)
                try:
                    dispatcher.wait_children()
                except KeyboardInterrupt:
                    _stop_run(home, store, report.claims[0].run_id, "interrupted from the terminal")
                    dispatcher.wait_children()
                    raise
        else:
            os.kill(found.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + answer_timeout
        while True:
            answer = store.request(request_id)
            if answer is not None and answer[0]:
                break
            if time.monotonic() > deadline:
                raise DaemonError(f"the daemon (pid {found.proc.pid if found.proc else '?'}) did not take the "
                                  f"request within {answer_timeout:g} s; it stays queued for its next tick")
            time.sleep(0.01)
        _, run_id, error = answer
        if error:
            raise JobNotFound(error)
        assert run_id is not None
        return run_id, found.proc is None
    finally:
        store.close()


def wait_run(home: Home, run_id: int, poll: float = 0.05) -> RunRecord | None:
    """Follow a run until it has ended (recorded, or its result waiting)."""
    store = open_store(home)
    try:
        while True:
            run = store.run(run_id)
            if run is not None:
                run = waiting_results(home, [run])[0]
            if run is None or not run.open:
                return run
            time.sleep(poll)
    finally:
        store.close()


def _stop_run(home: Home, store: Store, run_id: int, reason: str) -> None:
    """Stop a run: one not started yet (its supervisor may be waiting for the slot) is
    cancelled through its start token; a started one is asked to stop."""
    run = store.run(run_id)
    if run is None or not run.open:
        return
    files = _files(home, run)
    if files.take_token({"cancelled": reason}):
        record_ended(home, store, run, Outcome.INTERRUPTED, f"{reason} before it started")
        return
    request_stop(files, files.read_supervisor(), files.read_job_pid(), reason)


def stop_runs(home: Home, reason: str, timeout: float | None = None) -> int:
    """Stop every run in flight, group by group (TERM, then KILL after each job's kill grace),
    wait for them, and record them (the daemon is stopped: nobody else will). Returns how many
    were asked to stop."""
    store = open_store(home)
    try:
        dispatcher = Dispatcher(home, store, ProcId.me(), Silent())
        open_runs = dispatcher.recorder.collect()
        for run in open_runs:
            _stop_run(home, store, run.id, reason)
        grace = max((spec.kill_grace for r in open_runs if (spec := r.job_spec) is not None), default=0.0)
        deadline = time.monotonic() + (timeout if timeout is not None else grace + 10.0)
        asked = {o.id for o in open_runs}
        while time.monotonic() < deadline:
            left = [r for r in dispatcher.recorder.collect() if r.id in asked]
            if not any(_run_alive(home, r) for r in left):
                break
            time.sleep(0.05)
        dispatcher.recover(time.time())
        return len(open_runs)
    finally:
        store.close()


def _run_alive(home: Home, run: RunRecord) -> bool:
    """Whether a run is still going: no result yet, and its supervisor or its job alive."""
    files = _files(home, run)
    if files.read_result() is not None:
        return False
    return any(p is not None and p.alive() for p in (files.read_supervisor(), files.read_job_pid()))


def known(home: Home, name: str, running: bool = False) -> None:
    """JobNotFound unless `name` is a job of ours or a Hermes job; with `running`, InvalidInput
    for a Hermes job that hermes-cron does not fire (the hand-over is not active)."""
    if not is_hermes_name(name):
        definitions.load(home).get(name)
        return
    from hermes_cron.app.hermes_view import listing

    handover, view = listing(home)
    hj = view.jobs.get(name)
    if hj is None:
        raise JobNotFound(f"no job named {name!r} (nor a Hermes job with that id in {home.legacy_jobs})")
    if running and (handover is None or not handover.active or hj.job is None):
        why = hj.problem if hj.job is None else (handover.why if handover else "not handed over")
        raise InvalidInput(f"hermes-cron does not fire Hermes's job {hj.id} ({why}); run it with Hermes: "
                           f"hermes cron run {hj.id}")


def history(home: Home, name: str | None, limit: int, outcomes: tuple[Outcome, ...] = ()) -> list[RunRecord]:
    """The runs of a job (or of every job, with `name` None), newest first; with `outcomes`,
    only the runs that ended so."""
    store = open_store(home)
    try:
        found = waiting_results(home, store.history(name, limit, outcomes))
    finally:
        store.close()
    if not found and name is not None:
        known(home, name)  # JobNotFound for a name that never existed
    return found


def output_copy(home: Home, run_id: int) -> tuple[str | None, str | None]:
    """Shared store: (the node that ran it, the capped copy of its output in the database)."""
    store = open_store(home)
    try:
        return store.output_copy(run_id)
    finally:
        store.close()


def run_output(home: Home, name: str, run_id: int | None) -> RunRecord:
    """The run whose output to show: `run_id`, or the job's latest run that has output."""
    store = open_store(home)
    try:
        run = store.run(run_id) if run_id is not None else store.latest_started(name)
    finally:
        store.close()
    if run is None or run.job != name:
        known(home, name)
        if run_id is not None:
            raise JobNotFound(f"job {name!r} has no run {run_id} (its runs: hermes-cron history {name})")
        raise JobNotFound(f"job {name!r} has no run with output yet (run it now with: "
                          f"hermes-cron trigger {name} --wait)")
    return waiting_results(home, [run])[0]
