"""One tick's scheduling step: under `.tick.lock`, and only under it, bring the schedule state
in line with hermes-cron-jobs.json, pick the due jobs, apply the misfire and overlap policies, advance
each job's next run, and record every dispatch durably as a claimed run, all in one transaction
of the store (none at all when nothing is due and nobody wrote since the last tick: `_quiet`).
Nothing here starts a process: the caller hands the claims to the dispatcher after the lock
is released.

Words: a *tick* is one pass of the daemon's loop (engine/daemon.py's `_tick`), or one call of
`hermes_cron.tick()`: claim (this module's `Scheduler.claim`, the only part under the lock, in
the store's one tick transaction), then hand the claims over, record and settle runs.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Hashable

from hermes_cron import faults
from hermes_cron.contract.locks import FileLock
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId, cmdline
from hermes_cron.errors import InvalidInput, LockBusy, StoreError, TickLockBusy
from hermes_cron.logic import reconcile
from hermes_cron.logic.hermes import requested
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.policy import Decision, decide
from hermes_cron.logic.schedule import IntervalSchedule
from hermes_cron.logic.run import Outcome, RunState, Trigger
from hermes_cron.store import definitions
from hermes_cron.store.base import Advance, NewRun, Store, TickTransaction
from hermes_cron.store.jobstore import Definitions
from hermes_cron.engine.claims import Claim, Missed, Skipped, TickReport

TICK_LOCK_TIMEOUT = 5.0
_UNSCHEDULABLE = (InvalidInput, ValueError, OverflowError)


@dataclass
class _Decided:
    """A tick's decisions for its due jobs: the runs to insert (claims at `claimed`, skipped slots
    at `skipped`, by index into runs) and the schedule advances."""

    runs: list[NewRun] = field(default_factory=list)
    claimed: list[tuple[int, Job, float | None, Trigger, tuple[int, ...]]] = field(default_factory=list)
    skipped: list[tuple[int, str, float]] = field(default_factory=list)
    advances: list[Advance] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)
    broken: list[tuple[str, str]] = field(default_factory=list)


AHEAD_FOR = 0.02  # decisions made before the lock are used if it was taken within this time


@dataclass
class _Ahead:
    """A tick decided before its lock: good under the lock only if nobody wrote to the store
    since it was read (its data_version), the tick's time is the same, the lock came quickly,
    the schedule rows were not reconciled under it, and no @reboot run is due."""

    version: Hashable
    now: float
    ready: float  # the clock when the decisions were made
    in_flight: dict[str, list[int]]
    decided: _Decided

    def holds(self, tx: TickTransaction, now: float, wall: float, reconciled: bool, reboot: list[str]) -> bool:
        return (not reconciled and not reboot and now == self.now and wall - self.ready < AHEAD_FOR
                and tx.data_version() == self.version)


class _Primed:
    """A job's schedule with the slot after `first` worked out already (before the tick lock)."""

    __slots__ = ("schedule", "first", "following")

    def __init__(self, schedule: Any, first: float, following: float | None):
        self.schedule, self.first, self.following = schedule, first, following

    def next_after(self, t: float) -> float | None:
        return self.following if t == self.first else self.schedule.next_after(t)


class Scheduler:
    """Claims due runs for one home. Holds the store and a cache of hermes-cron-jobs.json."""

    def __init__(self, home: Home, store: Store, owner: ProcId, boot_id: str,
                 lock_timeout: float = TICK_LOCK_TIMEOUT):
        self.home = home
        self.store = store
        self.owner = owner
        self.boot_id = boot_id
        self.lock_timeout = lock_timeout
        self._native: Definitions | None = None  # hermes-cron-jobs.json as last read
        self._defs: Definitions | None = None  # with Hermes's jobs, while they are handed over
        self._defs_key: tuple | None = None
        self.hermes: Any = None  # store/hermes_source.Scheduled, loaded only where Hermes lives
        self._hermes_view: Any = None  # store/hermes_source.HermesView
        self._answered: dict[str, str] = {}  # Hermes job -> the next_run_at last acted on
        self._reconciled: Definitions | None = None
        self._diff: set[str] = set()  # changed_jobs(_reconciled, _diff_for), worked out ahead
        self._diff_for: Definitions | None = None
        self._invalid_seen: dict[str, str] = {}  # name -> reason, as last reported
        self._invalid_for: Definitions | None = None
        self._ahead: dict[str, _Primed] = {}  # due jobs' next slots, worked out by _prepare
        self._idle = False  # _prepare found nothing due, at the version our last full tick ended at
        self._settled: Hashable | None = None  # the data_version our last full tick transaction ended at

    @property
    def definitions(self) -> Definitions:
        """hermes-cron-jobs.json (re-read when it changed), with Hermes's jobs while they are ours."""
        db = getattr(self.store, "db", None) if self.home.store else None  # the shared store's connection
        sig = definitions.signature(self.home, db)
        if self._native is None or self._native.sig != sig:
            self._native = definitions.load(self.home, db)
        token, view = "", None
        if self.home.hermes_here:
            from hermes_cron.store.hermes_source import Scheduled

            self.hermes = self.hermes or Scheduled(self.home)
            token, view = self.hermes.current()
        self._hermes_view = view
        if self._defs is None or self._defs_key != (self._native, token):
            if view is None:
                self._defs = self._native  # (merge() would give the same jobs and signature)
            else:
                from hermes_cron.store.hermes_source import merge

                self._defs = merge(self._native, token, view)
            self._defs_key = (self._native, token)
        return self._defs

    @property
    def loaded(self) -> Definitions:
        """The definitions as the last tick read them, without a look at the files."""
        return self._defs if self._defs is not None else self.definitions

    def claim(self, now: float | None = None, only_requests: set[int] | None = None) -> TickReport:
        """Claim what is due at `now` (default: the current time) and return the claims.

        `now` may run a few milliseconds ahead of the clock: the daemon claims a slot just
        before it comes and its supervisor starts the run on the slot, never before.
        With `only_requests`, claim nothing but those trigger requests (a command running a job
        in the foreground when no daemon runs)."""
        # A changed hermes-cron-jobs.json is read, and compared with the version reconciled last, before the
        # lock is taken, not under it.
        defs = self.definitions
        if self._reconciled is not None and self._reconciled is not defs and self._diff_for is not defs:
            self._diff = reconcile.changed_jobs(self._reconciled.jobs, defs.jobs)
            self._diff_for = defs
        given = now is not None  # (else the time is read again under the lock, and may have moved on)
        ahead = self._prepare(defs, time.time() if now is None else now) if only_requests is None else None
        lock = FileLock(self.home.tick_lock, "the tick lock")
        try:
            lock.acquire(self.lock_timeout)
        except LockBusy as e:
            command = " ".join(cmdline(e.holder_pid))[:200] if e.holder_pid else ""
            raise TickLockBusy(str(e) + (f" ({command})" if command else ""), e.holder_pid, command or None) from None
        # No garbage collection under the lock: a full one walks every object of the process
        # (350 ms with 100,000 jobs loaded); one that falls due meanwhile runs after the release.
        # Nor freeing the definitions this tick replaces (as long, at 100,000 jobs): `previous`
        # keeps them until the lock is let go.
        previous, collecting = self._reconciled, gc.isenabled()
        gc.disable()
        try:
            t0 = time.monotonic()
            wall = time.time()
            now = wall if now is None else now
            report = TickReport(now, wall=wall)
            if self._invalid_for is not defs:
                report.invalid = self._newly_invalid(defs)
            faults.hit("tick.locked")
            if given and only_requests is None and self._quiet(defs):
                report.quiet = True
            else:
                self._tick_transaction(now, wall, ahead, only_requests, report, t0)
            report.lock_held = time.monotonic() - t0
            self._note_hermes_claims(report)
        finally:
            lock.release()
            if collecting:
                gc.enable()
        del previous
        self.store.flush()  # durable before any claim is handed over; not lock time
        return report

    def _quiet(self, defs: Definitions) -> bool:
        """Under the lock: nobody wrote to the store since our last tick's transaction ended (its
        data_version, read inside it, where no one else can commit; our own connection's changes
        count too), _prepare found nothing due at that same version, and the definitions are the
        ones that tick reconciled. Then there is nothing to reconcile, claim, answer (a request
        is a write) or run at @reboot, and the tick opens no transaction: an idle daemon's tick
        is one statement under the lock. (Hermes's requests come from its files, not from the
        store, so a tick that serves Hermes always looks.)"""
        return (self._idle and defs is self._reconciled and self._hermes_view is None
                and self.store.data_version() == self._settled)

    def _tick_transaction(self, now: float, wall: float, ahead: _Ahead | None, only_requests: set[int] | None,
                          report: TickReport, t0: float) -> None:
        """The tick's one transaction: reconcile, claim the due runs, answer the requests."""
        phase, settled = report.phases, None
        self._settled = None
        with self.store.tick(flush_later=True) as tx:
            phase["begin"] = time.monotonic() - t0
            changed = self._sync(tx, now, report)
            phase["sync"] = time.monotonic() - t0
            in_flight = None
            if only_requests is None:
                reboot = tx.reboot_due(self.boot_id)
                if ahead is not None and ahead.holds(tx, now, wall, changed, reboot):
                    in_flight, decided = ahead.in_flight, ahead.decided  # as decided before the lock
                    report.decided_ahead = True
                else:
                    due = tx.due(now)
                    in_flight = tx.in_flight() if due or reboot else None
                    decided = self._decide_due(due, now, in_flight or {}, wall) if due else None
                if decided is not None or reboot:
                    in_flight = in_flight if in_flight is not None else {}
                    self._write_claims(tx, decided or _Decided(), reboot, wall, in_flight, report)
                    phase["write"] = time.monotonic() - t0
            requests = [r for r in tx.open_requests() if only_requests is None or r.id in only_requests]
            if requests:
                in_flight = in_flight if in_flight is not None else tx.in_flight()
                for r in requests:
                    self._answer(tx, r.id, r.job, wall, in_flight, report)
            phase["requests"] = time.monotonic() - t0
            if only_requests is None and self._hermes_view is not None:
                self._hermes_requests(tx, wall, in_flight, report)
            # Not after a tick for some requests only (it may leave others open), nor after claims
            # (their hand-over writes next, so the next tick is whole anyway: no statement for it here).
            if only_requests is None and not report.claims:
                settled = tx.data_version()
        self._settled = settled  # (only once committed)

    def _prepare(self, defs: Definitions, now: float) -> _Ahead | None:
        """Outside the lock: compile the schedules, freeze the specs and work out the next slot
        of the jobs about to be due; and, where the store can tell whether anyone wrote to it
        since (SQLite's data_version), decide the tick ahead, so that the tick under the lock
        only checks that nothing changed, and writes."""
        self._ahead = {}
        version = self.store.data_version()
        due = self.store.due(now)
        self._idle = not due and version is not None and version == self._settled
        for name, first in due:
            job = defs.jobs.get(name)
            if job is not None:
                try:
                    job.spec_json  # noqa: B018
                    if not isinstance(job.compiled, IntervalSchedule):  # (an interval's next slot is a sum)
                        self._ahead[name] = _Primed(job.compiled, first, job.compiled.next_after(first))
                except _UNSCHEDULABLE:
                    pass  # _decide meets it again under the lock, and sets the job aside
        if version is None or not due or any(name not in defs.jobs for name, _ in due):
            return None
        wall = time.time()
        in_flight = self.store.in_flight()
        decided = self._decide_due(due, now, in_flight, wall)
        return _Ahead(version, now, time.time(), in_flight, decided)

    def _newly_invalid(self, defs: Definitions) -> list[tuple[str, str]]:
        """The invalid entries of hermes-cron-jobs.json not reported yet, or whose reason changed: each is
        logged once per change, not once per tick."""
        self._invalid_for = defs
        fresh = [(name, v.reason) for name, v in defs.invalid.items() if self._invalid_seen.get(name) != v.reason]
        self._invalid_seen = {name: v.reason for name, v in defs.invalid.items()}
        return fresh

    # steps ------------------------------------------------------------------------------

    def _sync(self, tx: TickTransaction, now: float, report: TickReport) -> bool:
        """Reconcile schedule rows with hermes-cron-jobs.json if it changed since the last reconcile. When
        the rows reflect the version this scheduler reconciled last, only the jobs that differ
        between the two versions are touched (one hand edit in 10,000 jobs touches one row)."""
        previous, defs = self._reconciled, self._defs
        assert defs is not None  # read by claim() before it takes the lock
        stored = tx.reconcile_sig()
        changed = stored != defs.sig.text()
        if changed:
            only = None
            if previous is not None and stored == previous.sig.text():
                only = self._diff if self._diff_for is defs else reconcile.changed_jobs(previous.jobs, defs.jobs)
            changes, broken = reconcile.plan(tx.sched_rows(only), defs.jobs, now, self.boot_id, only)
            tx.apply_sched_changes(changes, defs.sig.text(), {n: v.reason for n, v in defs.invalid.items()}, now)
            report.broken += broken
        self._reconciled = defs
        return changed

    def _job(self, name: str) -> Job:
        assert self._defs is not None  # loaded by claim() before it takes the lock
        job = self._defs.jobs.get(name)
        if job is None:  # reconcile keeps rows and definitions in step; this is a bug if seen
            raise StoreError(f"schedule row for {name!r} has no definition in {self.home.jobs}")
        return job

    def _decide_due(self, due: list[tuple[str, float]], now: float, in_flight: dict[str, list[int]],
                    wall: float) -> _Decided:
        """Decide every due job (no store access: before the lock when it can be, else under it)."""
        out = _Decided()
        runs, claimed, skipped, advances = out.runs, out.claimed, out.skipped, out.advances
        for name, first in due:
            job = self._job(name)
            try:
                primed = self._ahead.get(name)
                d: Decision = decide(primed if primed is not None and primed.first == first else job.compiled, first,
                                     now, job.misfire_grace, job.overlap, tuple(in_flight.get(name, ())))
                spec = job.spec_json
            except _UNSCHEDULABLE as e:
                # One job whose times can't be computed never stops the others: it is set aside
                # (no next run) until its definition changes, and reported once.
                advances.append(Advance(name, None, None, False))
                out.broken.append((name, f"{type(e).__name__}: {e}"))
                continue
            if d.missed is not None:
                runs.append(NewRun(name, Trigger.SCHEDULE, d.missed.newest, wall, RunState.DONE, Outcome.MISSED,
                                   spec=spec, missed_count=d.missed.count, first_missed=d.missed_first,
                                   reason=("at least " if d.missed.capped else "") + f"{d.missed.count} slot(s) "
                                   "passed unrun (daemon down, machine asleep, or later than the misfire grace)"))
                out.missed.append(Missed(name, d.missed.count, d.missed.capped, d.missed_first or first,
                                         d.missed.newest))
            if d.fire is not None and d.skipped:
                skipped.append((len(runs), name, d.fire))
                runs.append(NewRun(name, Trigger.SCHEDULE, d.fire, wall, RunState.DONE, Outcome.SKIPPED,
                                   reason=f"run(s) {', '.join(map(str, in_flight[name]))} still in flight "
                                   "(overlap: skip)"))
            elif d.fire is not None:
                claimed.append((len(runs), job, d.fire, Trigger.SCHEDULE, d.replaces))
                runs.append(NewRun(name, Trigger.SCHEDULE, d.fire, wall, owner=self.owner, replaces=d.replaces,
                                   spec=spec))
            advances.append(Advance(name, d.next_run, d.fire if d.fire is not None else
                                    (d.missed.newest if d.missed else None), d.done))
        return out

    def _write_claims(self, tx: TickTransaction, decided: _Decided, reboot: list[str], wall: float,
                      in_flight: dict[str, list[int]], report: TickReport) -> None:
        """Write all the decided runs and advances (two statements), and the @reboot runs."""
        runs, claimed = list(decided.runs), list(decided.claimed)
        report.missed += decided.missed
        report.broken += decided.broken
        for name in reboot:
            job = self._job(name)
            claimed.append((len(runs), job, wall, Trigger.REBOOT, ()))
            runs.append(NewRun(name, Trigger.REBOOT, wall, wall, owner=self.owner, spec=job.spec_json))
            tx.mark_rebooted(name, self.boot_id)
        ids = tx.insert_runs(runs)  # None: a shared store has that slot claimed already
        tx.advance(decided.advances)
        for index, name, slot in decided.skipped:
            if ids[index] is not None:
                report.skipped.append(Skipped(name, slot, ids[index]))
        for index, job, slot, trigger, replaces in claimed:
            if ids[index] is not None:
                report.claims.append(Claim(ids[index], job, slot, trigger, replaces))
                in_flight.setdefault(job.name, []).append(ids[index])

    def _hermes_requests(self, tx: TickTransaction, now: float, in_flight: dict[str, list[int]] | None,
                         report: TickReport) -> None:
        """`hermes cron run ID` sets the job due now and expects a ticker to fire it: a Hermes job
        due by its own next_run_at that no slot of ours explains is run now (see logic/hermes.py's
        `requested`), once per next_run_at value; while a run of it is in flight it waits."""
        assert self._hermes_view is not None and self._defs is not None
        asks = [hj for hj in self._hermes_view.jobs.values()
                if hj.job is not None and hj.enabled and hj.next_at is not None and hj.next_at <= now
                and self._answered.get(hj.our_name) != hj.next_run_at and hj.our_name in self._defs.jobs]
        if not asks:
            return
        rows = tx.sched_rows({hj.our_name for hj in asks})
        in_flight = in_flight if in_flight is not None else tx.in_flight()
        for hj in asks:
            row = rows.get(hj.our_name)
            if row is None or in_flight.get(hj.our_name) or not requested(hj, now, row.last_slot, row.next_run):
                continue
            job = self._defs.jobs[hj.our_name]
            [run_id] = tx.insert_runs([NewRun(job.name, Trigger.MANUAL, now, now, owner=self.owner, spec=job.spec_json)])
            report.claims.append(Claim(run_id, job, now, Trigger.MANUAL))
            in_flight.setdefault(job.name, []).append(run_id)

    def _note_hermes_claims(self, report: TickReport) -> None:
        """Remember the next_run_at each claimed Hermes run answers, so it is not taken for a
        `hermes cron run` request at the next tick."""
        view = self._hermes_view
        if view is None:
            return
        for c in report.claims:
            hj = view.jobs.get(c.job.name)
            if hj is not None and hj.next_run_at is not None:
                self._answered[c.job.name] = hj.next_run_at

    def _answer(self, tx: TickTransaction, request_id: int, name: str, now: float,
                in_flight: dict[str, list[int]], report: TickReport) -> None:
        assert self._defs is not None
        job = self._defs.jobs.get(name)
        if job is None:
            tx.answer_request(request_id, None, f"no job named {name!r}")
            return
        running = tuple(in_flight.get(name, ()))
        if running and job.overlap == "skip":
            [run_id] = tx.insert_runs([NewRun(name, Trigger.MANUAL, now, now, RunState.DONE, Outcome.SKIPPED,
                                              reason=f"run(s) {', '.join(map(str, running))} still in flight "
                                              "(overlap: skip)")])
            report.skipped.append(Skipped(name, now, run_id))
        else:
            replaces = running if job.overlap == "replace" else ()
            [run_id] = tx.insert_runs([NewRun(name, Trigger.MANUAL, now, now, owner=self.owner, replaces=replaces,
                                              spec=job.spec_json)])
            report.claims.append(Claim(run_id, job, now, Trigger.MANUAL, replaces))
            in_flight.setdefault(name, []).append(run_id)
        tx.answer_request(request_id, run_id, None)
