"""Job operations as the CLI (and any program) uses them: add, edit, remove, pause, resume,
and the jobs with where they stand (list, show). Each edit is a read-modify-write of
hermes-cron-jobs.json under the store lock, followed by a reconcile of the schedule state, and a
nudge to a running daemon."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable

from hermes_cron.store import definitions, jobstore
from hermes_cron.contract.pidfile import read_pidfile, verify
from hermes_cron.errors import InvalidInput, JobExists, JobNotFound
from hermes_cron.logic.jobs import Job
from hermes_cron.store.jobstore import Definitions
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import boot_id
from hermes_cron.logic.schedule import check_fires
from hermes_cron.app.runs import record_ended, waiting_results
from hermes_cron.logic import reconcile
from hermes_cron.logic.hermes import PREFIX, is_hermes_name
from hermes_cron.app.hermes_view import refuse
from hermes_cron.logic.reconcile import SchedRow, initial_next_run
from hermes_cron.logic.run import Outcome
from hermes_cron.store.base import Store
from hermes_cron.store.runfiles import RunFiles
from hermes_cron.store.hermes_source import with_hermes
from hermes_cron.store.opening import has_state, open_store


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
    store = open_store(home)  # opened first: a broken state database aborts before anything is written
    try:
        def after(defs: Definitions) -> None:
            sync_schedule(store, defs, time.time(), home)
            if stops is not None:
                cancel_unstarted(home, store, *stops)

        result = definitions.mutate(home, change, after, forget=forget)
    finally:
        store.close()
    nudge_daemon(home)
    return result


def sync_schedule(store: Store, defs: Definitions, now: float, home: Home | None = None) -> None:
    """Bring the schedule rows in line with `defs` at once (the daemon would at its next tick),
    with the Hermes agent's jobs while they are handed over (their rows are not ours to drop)."""
    if home is not None:
        defs = with_hermes(defs, home)
    with store.tick() as tx:
        changes, _ = reconcile.plan(tx.sched_rows(), defs.jobs, now, boot_id())
        tx.apply_sched_changes(changes, defs.sig.text(), {n: v.reason for n, v in defs.invalid.items()}, now)


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
    if is_hermes_name(job.name):
        raise InvalidInput(f"job names starting with {PREFIX!r} are the Hermes agent's jobs (create those with "
                           "`hermes cron create`); choose another name")
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


def add_jobs(home: Home, jobs: list[Job]) -> list[Job]:
    """Add several jobs in one edit (an import): all or none; one whose name is taken meanwhile
    is left out."""
    now = time.time()
    for job in jobs:
        if is_hermes_name(job.name):
            raise InvalidInput(f"job {job.name!r}: names starting with {PREFIX!r} are the Hermes agent's jobs")
        _checked(job, now)

    def change(current: dict[str, Job]) -> list[Job]:
        added = [job for job in jobs if job.name not in current]
        current.update({job.name: job for job in added})
        return added

    return _edit(home, change)


def edit_job(home: Home, name: str, changes: dict[str, Any]) -> Job:
    """Change fields of a job. A new schedule or zone re-anchors interval schedules at now."""
    now = time.time()
    refuse(home, name, "edit")
    definitions.load(home).get(name)  # an invalid job is named as such, with what to do

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
    """Remove a job, or an invalid entry of hermes-cron-jobs.json by its name."""
    refuse(home, name, "remove")
    if name in definitions.load(home).invalid:
        return _edit(home, lambda jobs: None, (name, "job removed"), forget=name)
    return _edit(home, lambda jobs: jobs.pop(name) if name in jobs else _get(jobs, name), (name, "job removed"))


def set_enabled(home: Home, name: str, enabled: bool) -> Job:
    refuse(home, name, "resume" if enabled else "pause")
    definitions.load(home).get(name)  # an invalid job is named as such, with what to do

    def change(jobs: dict[str, Job]) -> Job:
        jobs[name] = _get(jobs, name).evolve(enabled=enabled)
        return jobs[name]

    return _edit(home, change, None if enabled else (name, "job paused"))


def cancel_unstarted(home: Home, store: Store, name: str, why: str) -> int:
    """Cancel a job's scheduled runs that were claimed but have not started, recording each as
    skipped. The daemon claims a slot a moment before it comes (up to a second, in a burst), so
    without this a pause or a removal made in that moment would not hold for that slot. The run's
    start token decides between this and the supervisor about to start it: whoever creates it
    first wins. Manual runs (`trigger`) are left alone. Returns how many were cancelled."""
    cancelled = 0
    for run in store.open_runs():
        if run.job != name or run.trigger != "schedule":
            continue
        if RunFiles(home.run_dir(run.job, run.id)).take_token({"cancelled": why}):
            record_ended(home, store, run, Outcome.SKIPPED, f"{why} before it started")
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
    last_status: Outcome | None
    last_ended: float | None
    running: int
    ticked_by_hermes: bool = False  # a Hermes job its own ticker still fires (no hand-over)

    def to_dict(self) -> dict[str, Any]:
        from hermes_cron.logic.zones_lite import utc_iso

        d = {
            **self.job.to_dict(),
            "state": self.state_text,
            "next_run": utc_iso(self.next_run),
            "last_status": self.last_status,
            "last_ended": utc_iso(self.last_ended),
            "running": self.running,
        }
        if self.job.hermes is not None:
            d["hermes"] = {**self.job.hermes, "ticked_by": "Hermes's own ticker" if self.ticked_by_hermes
                           else "hermes-cron"}
        return d

    @property
    def state_text(self) -> str:
        if self.completed:
            return "completed"
        if self.ticked_by_hermes and self.job.enabled:
            return "hermes-ticker"
        return "enabled" if self.job.enabled else "paused"


def job_views(home: Home, names: list[str] | None = None,
              warnings: list[str] | None = None) -> list[JobView | jobstore.Invalid]:
    """The jobs with where they stand, and the invalid entries of hermes-cron-jobs.json with why, by
    name; the Hermes agent's jobs too (`warnings` gets why they can't be read, if so)."""
    from hermes_cron.app.hermes_view import listing

    defs = definitions.load(home)
    handover, hermes = listing(home)
    if hermes.error and warnings is not None:
        warnings.append(f"Hermes's jobs file can't be read, its jobs are not listed: {hermes.error}")
    ticked_by_hermes = handover is None or not handover.active
    hermes_jobs = {n: hj for n, hj in hermes.jobs.items() if hj.job is not None and n not in defs.jobs}
    rows: dict[str, SchedRow] = {}
    last: dict[str, tuple[Outcome | None, float | None]] = {}
    running: dict[str, int] = {}
    if has_state(home):
        store = open_store(home)
        try:
            rows = store.sched_rows()
            last = store.last_outcomes()
            for run in waiting_results(home, store.open_runs()):
                if run.open:
                    running[run.job] = running.get(run.job, 0) + 1
                elif run.outcome is not None and run.outcome.ran:
                    last[run.job] = (run.outcome, run.ended_at)
        finally:
            store.close()
    now = time.time()
    out = []
    everything = defs.jobs.keys() | defs.invalid.keys() | hermes_jobs.keys()
    for name in names if names is not None else sorted(everything):
        if name in defs.invalid and name not in defs.jobs:
            out.append(defs.invalid[name])
            continue
        hj = hermes_jobs.get(name)
        job = hj.job if hj is not None and hj.job is not None else defs.get(name)
        row = rows.get(name)
        by_hermes = hj is not None and ticked_by_hermes
        if by_hermes:
            next_run, completed = (hj.next_at if hj is not None else None), False
        elif row is not None and row.fingerprint == job.fingerprint:
            next_run, completed = row.next_run, row.done
        else:
            next_run, completed = initial_next_run(job, now), False
        if not job.enabled:
            next_run = None
        status, ended = last.get(name, (None, None))
        out.append(JobView(job, next_run, completed, status, ended, running.get(name, 0), by_hermes))
    return out
