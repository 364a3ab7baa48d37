"""One tick's scheduling step: under `.tick.lock`, and only under it, bring the schedule state
in line with jobs.json, pick the due jobs, apply the misfire and overlap policies, advance
each job's next run, and record every dispatch durably as a claimed run. Nothing here starts
a process: the caller hands the claims to the dispatcher after the lock is released.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from hermes_cron import faults

from hermes_cron.store import jobstore
from hermes_cron.errors import InvalidInput, StoreError
from hermes_cron.logic.jobs import Job
from hermes_cron.store.jobstore import Definitions
from hermes_cron.contract.locks import FileLock
from hermes_cron.contract.paths import Home
from hermes_cron.logic.policy import Decision, decide
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.logic.schedule import AtSchedule
from hermes_cron.store.sqlite import RUN_INSERT_COLUMNS, State

TICK_LOCK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Claim:
    """A run recorded as claimed, to be started once the tick lock is released."""

    run_id: int
    job: Job
    scheduled: float | None
    trigger: str
    replaces: tuple[int, ...] = ()


@dataclass
class TickReport:
    now: float
    claims: list[Claim] = field(default_factory=list)
    skipped: list[tuple[str, float, int]] = field(default_factory=list)
    missed: list[tuple[str, int, bool, float, float]] = field(default_factory=list)
    lock_held: float = 0.0
    wall: float = 0.0  # the clock when the tick ran (`now` may be a little ahead of it)
    phases: dict[str, float] = field(default_factory=dict)  # seconds since the lock was taken
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (job, why): entries newly seen invalid
    broken: list[tuple[str, str]] = field(default_factory=list)  # (job, why): jobs whose times can't be computed


def initial_next_run(job: Job, now: float) -> float | None:
    """Where a new (or rescheduled, or resumed) job starts: its first slot after now.
    A one-shot keeps its time even if past, so the misfire policy decides about it."""
    sched = job.compiled
    if isinstance(sched, AtSchedule):
        return sched.when
    return sched.next_after(now)


class Scheduler:
    """Claims due runs for one home. Holds a State connection and a cache of jobs.json."""

    def __init__(self, home: Home, state: State, owner: ProcId, boot_id: str,
                 lock_timeout: float = TICK_LOCK_TIMEOUT):
        self.home = home
        self.state = state
        self.owner = owner
        self.boot_id = boot_id
        self.lock_timeout = lock_timeout
        self._defs: Definitions | None = None
        self._reconciled: Definitions | None = None
        self._diff: set[str] = set()  # changed_jobs(_reconciled, _diff_for), worked out ahead
        self._diff_for: Definitions | None = None
        self._invalid_seen: dict[str, str] = {}  # name -> reason, as last reported
        self._invalid_for: Definitions | None = None

    @property
    def definitions(self) -> Definitions:
        sig = jobstore.signature(self.home.jobs)
        if self._defs is None or self._defs.sig != sig:
            self._defs = jobstore.load(self.home)
        return self._defs

    def tick(self, now: float | None = None, only_requests: set[int] | None = None) -> TickReport:
        """Claim what is due at `now` (default: the current time) and return the claims.

        `now` may run a few milliseconds ahead of the clock: the daemon claims a slot just
        before it comes and its supervisor starts the run on the slot, never before.
        With `only_requests`, claim nothing but those trigger requests (a command running a job
        in the foreground when no daemon runs)."""
        # A changed jobs.json is read, and compared with the version reconciled last, before the
        # lock is taken, not under it.
        defs = self.definitions
        if self._reconciled is not None and self._reconciled is not defs and self._diff_for is not defs:
            self._diff = changed_jobs(self._reconciled, defs)
            self._diff_for = defs
        if only_requests is None:
            self._prepare(defs, time.time() if now is None else now)
        lock = FileLock(self.home.tick_lock, "the tick lock")
        lock.acquire(self.lock_timeout)
        try:
            t0 = time.monotonic()
            wall = time.time()
            now = wall if now is None else now
            report = TickReport(now, wall=wall)
            if self._invalid_for is not defs:
                report.invalid = self._newly_invalid(defs)
            phase = report.phases
            with self.state.transaction():
                phase["begin"] = time.monotonic() - t0
                faults.hit("tick.locked")
                self._sync(now, report)
                phase["sync"] = time.monotonic() - t0
                in_flight = None
                if only_requests is None:
                    due = self.state.due(now)
                    reboot = self.state.reboot_due(self.boot_id)
                    if due or reboot:
                        in_flight = self._in_flight()
                        batch = _Batch()
                        for name, first in due:
                            self._decide(name, first, now, in_flight, report, batch)
                        for name in reboot:
                            self._claim(self._job(name), wall, wall, "reboot", (), report, batch, in_flight)
                            self.state.mark_rebooted(name, self.boot_id)
                        phase["decide"] = time.monotonic() - t0
                        batch.flush(self.state)
                        phase["write"] = time.monotonic() - t0
                open_requests = [r for r in self.state.open_requests()
                                 if only_requests is None or r[0] in only_requests]
                if open_requests:
                    in_flight = in_flight if in_flight is not None else self._in_flight()
                    for request_id, name, requested_at in open_requests:
                        self._answer(request_id, name, wall, in_flight, report)
                phase["requests"] = time.monotonic() - t0
            report.lock_held = time.monotonic() - t0
            return report
        finally:
            lock.release()

    def _prepare(self, defs: Definitions, now: float) -> None:
        """Outside the lock: compile the schedules and freeze the specs of the jobs about to be
        due, so that the tick under the lock only decides and writes."""
        for name, _ in self.state.due(now):
            job = defs.jobs.get(name)
            if job is not None:
                try:
                    job.compiled  # noqa: B018
                    job.spec_json  # noqa: B018
                except (InvalidInput, ValueError, OverflowError):
                    pass  # _decide meets it again under the lock, and sets the job aside

    def _newly_invalid(self, defs: Definitions) -> list[tuple[str, str]]:
        """The invalid entries of jobs.json not reported yet, or whose reason changed: each is
        logged once per change, not once per tick."""
        self._invalid_for = defs
        fresh = [(name, v.reason) for name, v in defs.invalid.items() if self._invalid_seen.get(name) != v.reason]
        self._invalid_seen = {name: v.reason for name, v in defs.invalid.items()}
        return fresh

    # steps ------------------------------------------------------------------------------

    def _sync(self, now: float, report: TickReport) -> None:
        """Reconcile schedule rows with jobs.json if it changed since the last reconcile. When
        the rows reflect the version this scheduler reconciled last, only the jobs that differ
        between the two versions are touched (one hand edit in 10,000 jobs touches one row)."""
        previous, defs = self._reconciled, self.definitions
        stored = self.state.get_meta("defs_sig")
        if stored != defs.sig.text():
            only = None
            if previous is not None and stored == previous.sig.text():
                only = self._diff if self._diff_for is defs else changed_jobs(previous, defs)
            report.broken += reconcile(self.state, defs, now, self.boot_id, only)
        self._reconciled = defs

    def _job(self, name: str) -> Job:
        assert self._defs is not None  # loaded by tick() before it takes the lock
        job = self._defs.jobs.get(name)
        if job is None:  # reconcile keeps rows and definitions in step; this is a bug if seen
            raise StoreError(f"schedule row for {name!r} has no definition in {self.home.jobs}")
        return job

    def _in_flight(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for job, run_id in self.state.open_run_ids():
            out.setdefault(job, []).append(run_id)
        return out

    def _decide(self, name: str, first: float, now: float, in_flight: dict[str, list[int]],
                report: TickReport, batch: _Batch) -> None:
        job = self._job(name)
        try:
            d: Decision = decide(job.compiled, first, now, job.misfire_grace, job.overlap,
                                 tuple(in_flight.get(name, ())))
            job.spec_json  # noqa: B018
        except (InvalidInput, ValueError, OverflowError) as e:
            # One job whose times can't be computed never stops the others: it is set aside
            # (no next run) until its definition changes, and reported once.
            batch.advance(name, None, None, False)
            report.broken.append((name, f"{type(e).__name__}: {e}"))
            return
        wall = report.wall
        if d.missed is not None:
            batch.run(None, job=name, trigger="schedule", scheduled=d.missed.newest, state="done", status="missed",
                      claimed_at=wall, ended_at=wall, missed_count=d.missed.count, first_missed=d.missed_first,
                      reason=("at least " if d.missed.capped else "") + f"{d.missed.count} slot(s) passed unrun "
                      "(daemon down, machine asleep, or later than the misfire grace)")
            report.missed.append((name, d.missed.count, d.missed.capped, d.missed_first or first, d.missed.newest))
        if d.fire is not None:
            if d.skipped:
                fire = d.fire
                batch.run(lambda run_id: report.skipped.append((name, fire, run_id)),
                          job=name, trigger="schedule", scheduled=fire, state="done", status="skipped",
                          claimed_at=wall, ended_at=wall,
                          reason=f"run(s) {', '.join(map(str, in_flight[name]))} still in flight (overlap: skip)")
            else:
                self._claim(job, d.fire, wall, "schedule", d.replaces, report, batch, in_flight)
        batch.advance(name, d.next_run, d.fire if d.fire is not None else (d.missed.newest if d.missed else None),
                      d.done)

    def _claim(self, job: Job, scheduled: float | None, wall: float, trigger: str, replaces: tuple[int, ...],
               report: TickReport, batch: _Batch | None = None, in_flight: dict[str, list[int]] | None = None) -> int:
        """Record a claimed run; with a batch, the id comes when the batch is flushed."""
        def claimed(run_id: int) -> None:
            report.claims.append(Claim(run_id, job, scheduled, trigger, replaces))
            if in_flight is not None:
                in_flight.setdefault(job.name, []).append(run_id)

        values = dict(job=job.name, trigger=trigger, scheduled=scheduled, state="claimed", claimed_at=wall,
                      owner_pid=self.owner.pid, owner_start=self.owner.start,
                      replaces=json.dumps(list(replaces)) if replaces else None, spec=job.spec_json)
        if batch is not None:
            batch.run(claimed, **values)
            return -1
        run_id = self.state.insert_run(**values)
        claimed(run_id)
        return run_id

    def _answer(self, request_id: int, name: str, now: float, in_flight: dict[str, list[int]],
                report: TickReport) -> None:
        assert self._defs is not None
        job = self._defs.jobs.get(name)
        if job is None:
            self.state.answer_request(request_id, None, f"no job named {name!r}")
            return
        running = tuple(in_flight.get(name, ()))
        if running and job.overlap == "skip":
            run_id = self.state.insert_run(
                job=name, trigger="manual", scheduled=now, state="done", status="skipped",
                claimed_at=now, ended_at=now,
                reason=f"run(s) {', '.join(map(str, running))} still in flight (overlap: skip)",
            )
            report.skipped.append((name, now, run_id))
        else:
            replaces = running if job.overlap == "replace" else ()
            run_id = self._claim(job, now, now, "manual", replaces, report, in_flight=in_flight)
        self.state.answer_request(request_id, run_id, None)


class _Batch:
    """The writes of one tick's decisions, made with two executemany calls instead of a couple
    of statements per due job (the lock is held for them)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.then: list[Callable[[int], None] | None] = []
        self.advances: list[tuple] = []

    def run(self, then: Callable[[int], None] | None, **values: Any) -> None:
        self.rows.append(tuple(values.get(c) for c in RUN_INSERT_COLUMNS))
        self.then.append(then)

    def advance(self, job: str, next_run: float | None, last_slot: float | None, done: bool) -> None:
        self.advances.append((next_run, last_slot, int(done), job))

    def flush(self, state: State) -> None:
        if self.rows:
            first = state.insert_runs(self.rows)
            for offset, then in enumerate(self.then):
                if then is not None:
                    then(first + offset)
        if self.advances:
            state.advance_many(self.advances)


def changed_jobs(old: Definitions, new: Definitions) -> set[str]:
    """Names whose schedule state two versions of jobs.json disagree on."""
    out = set(old.jobs.keys() ^ new.jobs.keys())
    for name, job in new.jobs.items():
        before = old.jobs.get(name)
        if before is not None and (before.fingerprint != job.fingerprint or before.enabled != job.enabled):
            out.add(name)
    return out


def reconcile(state: State, defs: Definitions, now: float, boot_id: str,
              only: set[str] | None = None) -> list[tuple[str, str]]:
    """Bring the schedule rows in line with the definitions (inside a transaction); with
    `only`, just the rows of those jobs.

    A new job, or one whose schedule, zone or anchor changed, starts from its first slot after
    now. A resumed job does too: the time it spent paused is not caught up. @reboot jobs
    added during a boot first run at the next boot, as in cron. Returns the jobs whose first
    slot can't be computed, with why: they get no next run, and the others go on.
    """
    broken: list[tuple[str, str]] = []
    if only is None:
        found = state.query("SELECT job, fingerprint, enabled, done FROM sched")
        names = defs.jobs.keys() | {r[0] for r in found}
    else:
        names = only
        found = [r for chunk in _chunks(sorted(only), 500) for r in state.query(
            f"SELECT job, fingerprint, enabled, done FROM sched WHERE job IN ({','.join('?' * len(chunk))})",
            tuple(chunk))]
    rows = {job: (fp, bool(enabled), bool(done)) for job, fp, enabled, done in found}
    conn = state.conn
    for name in names:
        job = defs.jobs.get(name)
        row = rows.get(name)
        if job is not None:
            try:
                first = initial_next_run(job, now) if row is None or row[0] != job.fingerprint or \
                    (job.enabled and not row[2] and not row[1]) else None
            except (InvalidInput, ValueError, OverflowError) as e:
                broken.append((name, f"{type(e).__name__}: {e}"))
                job = None
        if job is None:
            if row is not None:
                conn.execute("DELETE FROM sched WHERE job = ?", (name,))
            continue
        if row is not None and row[0] == job.fingerprint and row[1] == job.enabled:
            continue
        if row is None:
            conn.execute(
                "INSERT INTO sched(job, fingerprint, enabled, kind, next_run, done, boot_id) VALUES (?, ?, ?, ?, ?, 0, ?)",
                (name, job.fingerprint, int(job.enabled), job.kind, first, boot_id),
            )
        elif row[0] != job.fingerprint:
            conn.execute(
                "UPDATE sched SET fingerprint = ?, enabled = ?, kind = ?, next_run = ?, done = 0, "
                "boot_id = COALESCE(boot_id, ?) WHERE job = ?",
                (job.fingerprint, int(job.enabled), job.kind, first, boot_id, name),
            )
        else:
            if job.enabled and not row[2]:
                conn.execute("UPDATE sched SET enabled = 1, next_run = ? WHERE job = ?", (first, name))
            else:
                conn.execute("UPDATE sched SET enabled = ? WHERE job = ?", (int(job.enabled), name))
    state.set_meta("defs_sig", defs.sig.text())
    state.set_meta("invalid_jobs", json.dumps({n: v.reason for n, v in defs.invalid.items()}))
    return broken


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
