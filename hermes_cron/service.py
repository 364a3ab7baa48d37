"""Job operations as the CLI (and any program) uses them: add, edit, remove, pause, resume,
list, show. Each edit is a read-modify-write of jobs.json under the store lock, followed by
a reconcile of the schedule state, and a nudge to a running daemon."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import jobstore
from .contract import read_pidfile, verify
from .errors import InvalidInput, JobExists, JobNotFound
from .jobs import Job
from .jobstore import Definitions
from .paths import Home
from .procinfo import boot_id
from .schedule import check_fires
from .state import SchedRow, State
from .ticker import initial_next_run, reconcile


def _checked(job: Job, now: float) -> Job:
    check_fires(job.compiled, now)
    if job.cwd is not None and not os.path.isdir(job.cwd):
        raise InvalidInput(f"job {job.name!r}: working directory {job.cwd} does not exist")
    return job


def _edit(home: Home, change: Callable[[dict[str, Job]], Any]) -> Any:
    """Apply `change` to the jobs under the store lock, then reconcile state and nudge the daemon."""
    state = State(home)  # opened first: a broken state database aborts before anything is written
    try:
        def after(defs: Definitions) -> None:
            with state.transaction():
                reconcile(state, defs, time.time(), boot_id())

        result = jobstore.mutate(home, change, after)
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


def remove_job(home: Home, name: str) -> Job:
    return _edit(home, lambda jobs: jobs.pop(name) if name in jobs else _get(jobs, name))


def set_enabled(home: Home, name: str, enabled: bool) -> Job:
    def change(jobs: dict[str, Job]) -> Job:
        jobs[name] = _get(jobs, name).evolve(enabled=enabled)
        return jobs[name]

    return _edit(home, change)


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
        from .zones import utc_iso

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


def job_views(home: Home, names: list[str] | None = None) -> list[JobView]:
    defs = jobstore.load(home)
    rows: dict[str, SchedRow] = {}
    last: dict[str, tuple[str | None, float | None]] = {}
    running: dict[str, int] = {}
    if os.path.exists(home.state):
        state = State(home)
        try:
            rows = state.sched_rows()
            last = state.last_statuses()
            for run in state.open_runs():
                running[run.job] = running.get(run.job, 0) + 1
        finally:
            state.close()
    now = time.time()
    out = []
    for name in names if names is not None else sorted(defs.jobs):
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
