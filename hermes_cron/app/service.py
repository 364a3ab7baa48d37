"""Job operations as the CLI (and any program) uses them: add, edit, remove, pause, resume,
list, show. Each edit is a read-modify-write of jobs.json under the store lock, followed by
a reconcile of the schedule state, and a nudge to a running daemon."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

from hermes_cron.store import jobstore
from hermes_cron.contract.daemon import read_pidfile, verify
from hermes_cron.errors import InvalidInput, JobExists, JobNotFound
from hermes_cron.logic.jobs import Job
from hermes_cron.store.jobstore import Definitions
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import boot_id
from hermes_cron.logic.schedule import check_fires
from hermes_cron.store.sqlite import SchedRow, State
from hermes_cron.engine.ticker import initial_next_run, reconcile


def _checked(job: Job, now: float) -> Job:
    check_fires(job.compiled, now)
    if job.cwd is not None and not os.path.isdir(job.cwd):
        why = "is not a directory" if os.path.exists(job.cwd) else "does not exist"
        raise InvalidInput(f"job {job.name!r}: working directory {job.cwd} {why}")
    return job


def _edit(home: Home, change: Callable[[dict[str, Job]], Any], stops: tuple[str, str] | None = None,
          forget: str | None = None) -> Any:
    """Apply `change` to the jobs under the store lock, then reconcile state and nudge the daemon.
    With `stops` (job name, why), the job's scheduled runs that are claimed but not yet started
    are cancelled too, still under the lock."""
    state = State(home)  # opened first: a broken state database aborts before anything is written
    try:
        def after(defs: Definitions) -> None:
            with state.transaction():
                reconcile(state, defs, time.time(), boot_id())
            if stops is not None:
                cancel_unstarted(home, state, *stops)

        result = jobstore.mutate(home, change, after, forget=forget)
    finally:
        state.close()
    nudge_daemon(home)
    return result


def nudge_daemon(home: Home) -> bool:
    """Wake a running daemon (SIGUSR1) so it sees a change now, not at its next tick."""
    proc = verify(read_pidfile(home.pidfile))
    if proc is None:
        return False
    try:
        os.kill(proc.pid, signal.SIGUSR1)
        return True
    except OSError:
        return False


def add_job(home: Home, job: Job) -> Job:
    now = time.time()
    if not job.created:
        job = job.evolve(created=now, anchor=job.anchor or float(int(now)))
    _checked(job, now)

    def change(jobs: dict[str, Job]) -> Job:
        if job.name in jobs:
            raise JobExists(f"a job named {job.name!r} already exists (use edit to change it)")
        jobs[job.name] = job
        return job

    return _edit(home, change)


def edit_job(home: Home, name: str, changes: dict[str, Any]) -> Job:
    """Change fields of a job. A new schedule or zone re-anchors interval schedules at now."""
    now = time.time()
    jobstore.load(home).get(name)  # an invalid job is named as such, with what to do

    def change(jobs: dict[str, Job]) -> Job:
        old = _get(jobs, name)
        fields = dict(changes)
        env_set = fields.pop("env_set", None)
        env_unset = fields.pop("env_unset", None)
        if env_set is not None or env_unset is not None:
            env = dict(old.env)
            env.update(env_set or {})
            for key in env_unset or ():
                env.pop(key, None)
            fields["env"] = tuple(sorted(env.items()))
        if "schedule" in fields or "tz" in fields:
            fields.setdefault("anchor", float(int(now)))
        new = old.evolve(**fields)
        if new.fingerprint != old.fingerprint:
            _checked(new, now)
        elif new.cwd != old.cwd:
            _checked(new, now)
        jobs[name] = new
        return new

    return _edit(home, change)


def remove_job(home: Home, name: str) -> Job | None:
    """Remove a job, or an invalid entry of jobs.json by its name."""
    if name in jobstore.load(home).invalid:
        return _edit(home, lambda jobs: None, (name, "job removed"), forget=name)
    return _edit(home, lambda jobs: jobs.pop(name) if name in jobs else _get(jobs, name), (name, "job removed"))


def set_enabled(home: Home, name: str, enabled: bool) -> Job:
    jobstore.load(home).get(name)  # an invalid job is named as such, with what to do

    def change(jobs: dict[str, Job]) -> Job:
        jobs[name] = _get(jobs, name).evolve(enabled=enabled)
        return jobs[name]

    return _edit(home, change, None if enabled else (name, "job paused"))


def cancel_unstarted(home: Home, state: State, name: str, why: str) -> int:
    """Cancel a job's scheduled runs that were claimed but have not started, recording each as
    skipped. The daemon claims a slot a moment before it comes (up to a second, in a burst), so
    without this a pause or a removal made in that moment would not hold for that slot. The run's
    start token decides between this and the supervisor about to start it: whoever creates it
    first wins. Manual runs (`trigger`) are left alone. Returns how many were cancelled."""
    from hermes_cron.engine.runner import RunFiles

    dispatcher = None
    cancelled = 0
    for run in state.open_runs():
        if run.job != name or run.trigger != "schedule":
            continue
        if RunFiles(home.run_dir(run.job, run.id)).take_token({"cancelled": why}):
            dispatcher = dispatcher or _dispatcher(home, state)
            dispatcher.finish(run, "skipped", reason=f"{why} before it started")
            cancelled += 1
    return cancelled


def _get(jobs: dict[str, Job], name: str) -> Job:
    try:
        return jobs[name]
    except KeyError:
        raise JobNotFound(f"no job named {name!r}") from None


@dataclass(frozen=True)
class JobView:
    """A job with where it stands: next run, last status, runs in flight."""

    job: Job
    next_run: float | None
    completed: bool
    last_status: str | None
    last_ended: float | None
    running: int

    def to_dict(self) -> dict[str, Any]:
        from hermes_cron.logic.zones_lite import utc_iso

        return {
            **self.job.to_dict(),
            "state": self.state_text,
            "next_run": utc_iso(self.next_run),
            "last_status": self.last_status,
            "last_ended": utc_iso(self.last_ended),
            "running": self.running,
        }

    @property
    def state_text(self) -> str:
        if self.completed:
            return "completed"
        return "enabled" if self.job.enabled else "paused"


def job_views(home: Home, names: list[str] | None = None) -> list[JobView | jobstore.Invalid]:
    """The jobs with where they stand, and the invalid entries of jobs.json with why, by name."""
    defs = jobstore.load(home)
    rows: dict[str, SchedRow] = {}
    last: dict[str, tuple[str | None, float | None]] = {}
    running: dict[str, int] = {}
    if os.path.exists(home.state):
        state = State(home)
        try:
            collect_results(home, state)
            rows = state.sched_rows()
            last = state.last_statuses()
            for run in state.open_runs():
                running[run.job] = running.get(run.job, 0) + 1
        finally:
            state.close()
    now = time.time()
    out = []
    for name in names if names is not None else sorted(defs.jobs.keys() | defs.invalid.keys()):
        if name in defs.invalid and name not in defs.jobs:
            out.append(defs.invalid[name])
            continue
        job = defs.get(name)
        row = rows.get(name)
        if row is not None and row.fingerprint == job.fingerprint:
            next_run, completed = row.next_run, row.done
        else:
            next_run, completed = initial_next_run(job, now), False
        if not job.enabled:
            next_run = None
        status, ended = last.get(name, (None, None))
        out.append(JobView(job, next_run, completed, status, ended, running.get(name, 0)))
    return out


def collect_results(home: Home, state: State) -> None:
    """Record runs that finished while no daemon was watching (their result files wait)."""
    _dispatcher(home, state).collect()


def _dispatcher(home: Home, state: State):  # -> dispatch.Dispatcher
    """A dispatcher owned by this (command) process, logging nothing: for recording runs."""
    from hermes_cron.engine.dispatch import Dispatcher
    from hermes_cron.contract.logs import Silent
    from hermes_cron.contract.procinfo import ProcId

    return Dispatcher(home, state, ProcId.me(), Silent())


# ---------------------------------------------------------------------------------------
# jobs at work: trigger, history, logs

EXIT_SKIPPED = 75  # EX_TEMPFAIL: `trigger --wait` found the job still running (overlap: skip)
EXIT_TIMED_OUT = 124  # as timeout(1)


def run_exit_status(status: str | None, exit_code: int | None, sig: int | None) -> int:
    """The exit status `trigger --wait` reports for a run."""
    if status == "succeeded":
        return 0
    if status == "timed_out":
        return EXIT_TIMED_OUT
    if status == "skipped":
        return EXIT_SKIPPED
    if exit_code is not None:
        return exit_code
    if sig is not None:
        return 128 + sig
    return 1


def trigger(home: Home, name: str, answer_timeout: float = 10.0) -> tuple[int, bool]:
    """Run a job now through the same claim path as a scheduled run (so the overlap policy
    holds). With a daemon running, it is asked to dispatch at once (SIGUSR1); without one,
    this process runs the job itself, in the foreground, and records it.

    Returns (run id, whether this process ran it)."""
    from hermes_cron.app.control import lookup
    from hermes_cron.engine.dispatch import Dispatcher
    from hermes_cron.errors import DaemonError
    from hermes_cron.contract.logs import Silent
    from hermes_cron.contract.procinfo import ProcId
    from hermes_cron.engine.ticker import Scheduler

    jobstore.load(home).get(name)
    state = State(home)
    try:
        request_id = state.add_request(name, time.time())
        found = lookup(home)
        if found.proc is None:
            me = ProcId.me()
            report = Scheduler(home, state, me, boot_id()).tick(only_requests={request_id})
            if report.claims:
                dispatcher = Dispatcher(home, state, me, Silent())
                dispatcher.submit(report.claims)
                try:
                    dispatcher.wait_children()
                except KeyboardInterrupt:
                    _stop_run(home, state, report.claims[0].run_id, "interrupted from the terminal")
                    dispatcher.wait_children()
                    raise
        else:
            os.kill(found.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + answer_timeout
        while True:
            answer = state.request(request_id)
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
        state.close()


def wait_run(home: Home, run_id: int, poll: float = 0.05):  # -> state.Run
    """Follow a run until it is recorded as done."""
    state = State(home)
    try:
        while True:
            collect_results(home, state)
            run = state.run(run_id)
            if run is None or run.state == "done":
                return run
            time.sleep(poll)
    finally:
        state.close()


def _stop_run(home: Home, state: State, run_id: int, reason: str) -> None:
    """Stop a run: one not started yet (its supervisor may be waiting for the slot) is
    cancelled through its start token; a started one is asked to stop."""
    from hermes_cron.engine.runner import RunFiles, request_stop

    run = state.run(run_id)
    if run is None or run.state == "done":
        return
    files = RunFiles(home.run_dir(run.job, run.id))
    if files.take_token({"cancelled": reason}):
        _dispatcher(home, state).finish(run, "interrupted", reason=f"{reason} before it started")
        return
    request_stop(files, files.read_reaper(), files.read_job_pid(), reason)


def stop_runs(home: Home, reason: str, timeout: float | None = None) -> int:
    """Stop every run in flight, group by group (TERM, then KILL after each job's kill grace),
    wait for them, and record them. Returns how many were asked to stop."""
    state = State(home)
    try:
        collect_results(home, state)
        open_runs = state.open_runs()
        for run in open_runs:
            _stop_run(home, state, run.id, reason)
        grace = max((spec.kill_grace for r in open_runs if (spec := r.job_spec) is not None), default=0.0)
        deadline = time.monotonic() + (timeout if timeout is not None else grace + 10.0)
        while time.monotonic() < deadline:
            collect_results(home, state)
            left = [r for r in state.open_runs() if r.id in {o.id for o in open_runs}]
            if not any(_run_alive(home, r) for r in left):
                break
            time.sleep(0.05)
        collect_results(home, state)
        _dispatcher(home, state).recover(time.time())
        return len(open_runs)
    finally:
        state.close()


def _run_alive(home: Home, run) -> bool:
    """Whether a run is still going: no result yet, and its supervisor or its job alive."""
    from hermes_cron.engine.runner import RunFiles

    files = RunFiles(home.run_dir(run.job, run.id))
    if files.read_result() is not None:
        return False
    return any(p is not None and p.alive() for p in (files.read_reaper(), files.read_job_pid()))


def history(home: Home, name: str, limit: int):  # -> list[state.Run]
    state = State(home)
    try:
        collect_results(home, state)
        found = state.history(name, limit)
    finally:
        state.close()
    if not found:
        jobstore.load(home).get(name)  # JobNotFound for a name that never existed
    return found


def run_output(home: Home, name: str, run_id: int | None):  # -> state.Run
    """The run whose output to show: `run_id`, or the job's latest run that has output."""
    state = State(home)
    try:
        collect_results(home, state)
        run = state.run(run_id) if run_id is not None else state.latest_started(name)
    finally:
        state.close()
    if run is None or run.job != name:
        jobstore.load(home).get(name)
        what = f"run {run_id}" if run_id is not None else "a run with output"
        raise JobNotFound(f"job {name!r} has no {what}")
    return run
