"""After the tick lock: handing claimed runs to supervisors, watching them, and recording how
they ended. Runs that nobody alive answers for are settled by engine/adopt.py.

The dispatcher never holds the tick lock. Its store writes are short transactions that touch
only run rows, so they can't undo an edit made to hermes-cron-jobs.json meanwhile. Every process call goes
through `system` (engine/system.py), so the quick tests drive it with a fake.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import replace
from typing import Any

from hermes_cron import faults
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.engine.adopt import Watched, adopt, after_supervisor
from hermes_cron.engine.launch import Launch, Target
from hermes_cron.engine.recorder import Recorder
from hermes_cron.engine.system import SYSTEM, SpareSupervisor, System
from hermes_cron.engine.claims import Claim
from hermes_cron.logic.histogram import FIRE_LATENCY, Histogram
from hermes_cron.errors import HermesCronError
from hermes_cron.logic.policy import retry_at
from hermes_cron.logic.run import Outcome, RunResult, Trigger
from hermes_cron.logic.zones_lite import utc_iso
from hermes_cron.store.base import RunRecord, Store

BATCH = 32  # runs per supervisor at least: one fork per batch instead of per run,
MAX_BATCH = 250  # and at most; between them, a burst is split in one batch per core: starting
# is CPU work, and supervisors beyond the cores only take turns (200 runs on 2 cores: 7
# supervisors of 32 took ~130 ms to the last start, 2 of 100 take ~85 ms)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Dispatcher:
    def __init__(self, home: Home, store: Store, owner: ProcId, log: Any,
                 max_concurrent: int | None = None, detach: bool = False,
                 nofile: tuple[int, int] | None = None, spare: bool = False, system: System = SYSTEM):
        self.home = home
        self.store = store
        self.owner = owner
        self.log = log
        self.os = system
        self.recorder = Recorder(home, store, log, system.time)
        self.max_concurrent = max_concurrent
        self.detach = detach
        self.nofile = nofile
        self.offset = 0.0  # shared store: the database's clock minus this host's (engine/cluster.py)
        self.lease: float | None = None  # shared store: a run's lease, which its supervisor enforces
        self.fire_latency = Histogram(FIRE_LATENCY)  # slot to start, of the runs this process started
        self.watched: dict[int, Watched] = {}
        self._children: dict[int, list[int]] = {}  # supervisor pid -> its run ids
        self._fds: dict[int, int] = {}  # pidfd -> run id
        self.queue: deque[Claim] = deque()
        self._none_open = False  # the last recover() found no run open in the store
        self.started: list[tuple[int, float, ProcId]] = []  # told by supervisors, not recorded yet
        self.keep_spare = spare and not detach
        if self.keep_spare:  # the daemon: its loop never waits for a ping, and it retries failed slots
            self.recorder.wait_pings = False
            self.recorder.on_recorded = self.retry
        self.spare: SpareSupervisor | None = None
        # Supervisors tell us here when a job starts and when a run ends (engine/supervisor.py),
        # so both are recorded at once. Non-blocking for the writers: a notice that doesn't fit
        # is not lost, only late (the result file is the record).
        self.notify_fd: int | None = None
        self._notify_w: int | None = None
        if spare and not detach:
            self.notify_fd, self._notify_w = os.pipe()
            os.set_blocking(self.notify_fd, False)
            os.set_blocking(self._notify_w, False)

    # handing over -----------------------------------------------------------------------

    def submit(self, claims: list[Claim]) -> None:
        """Start the claims (as many as max_concurrent allows; the rest wait in the queue).
        Events are logged after the processes are started, to keep logging off the latency."""
        self.queue.extend(claims)
        self.start_queued(announce=claims)

    def _has_room(self, batched: int = 0) -> bool:
        return self.max_concurrent is None or len(self.watched) + batched < self.max_concurrent

    def start_queued(self, announce: list[Claim] | tuple[Claim, ...] = ()) -> None:
        """Hand queued claims to supervisors: the spare takes the first batch, each further batch
        (BATCH to MAX_BATCH runs, one per core) costs one fork. A run that replaces others gets a
        supervisor of its own, since it waits for them to stop before it starts."""
        handed: list[tuple[Claim, ProcId | None]] = []
        if self.queue:
            faults.hit("dispatch.claimed")
        size = min(MAX_BATCH, max(BATCH, -(-len(self.queue) // CORES)))
        batch: list[Claim] = []
        while self.queue and self._has_room(len(batch)):
            claim = self.queue.popleft()
            if claim.replaces:
                handed += self._launch([claim])
            else:
                batch.append(claim)
                if len(batch) == size:
                    handed += self._launch(batch)
                    batch = []
        if batch:
            handed += self._launch(batch)
        for claim in announce:
            self.log.info("job.claimed", job=claim.job.name, run_id=claim.run_id, trigger=str(claim.trigger),
                          scheduled=utc_iso(claim.scheduled), replaces=list(claim.replaces) or None)
        if not handed:
            return
        self.store.hand_over([(claim.run_id, supervisor) for claim, supervisor in handed])
        for claim, supervisor in handed:
            self.log.debug("job.handed", job=claim.job.name, run_id=claim.run_id,
                          scheduled=utc_iso(claim.scheduled), trigger=str(claim.trigger),
                          supervisor_pid=supervisor.pid if supervisor else None)

    def _launch(self, claims: list[Claim]) -> list[tuple[Claim, ProcId | None]]:
        launches = [Launch.of(c.run_id, c.job, c.scheduled, self.home.run_dir(c.job.name, c.run_id),
                              self.home.root, self._targets(c), self.nofile, c.start_at) for c in claims]
        if self.lease is not None:  # shared store: the database's clock, and a lease to honour
            until = time.time() + self.lease * 0.75
            launches = [replace(la, start_at=la.start_at - self.offset if la.start_at is not None else None,
                                lease_until=until) for la in launches]
        if self.spare is not None:
            spare, self.spare = self.spare, None
            pid = spare.assign(launches)
        else:
            pid = self.os.spawn(launches, self._notify_w, self.detach)
        supervisor = self.os.proc(pid) if pid else None
        if not self.detach:
            self._children[pid] = [c.run_id for c in claims]
            for c in claims:
                self.watched[c.run_id] = Watched(c.run_id, c.job.name, c.job.kill_grace, supervisor=supervisor,
                                                 scheduled=c.scheduled, ping=c.job.ping)
        return [(c, supervisor) for c in claims]

    def ready_spare(self) -> None:
        """Keep a supervisor forked and waiting, so the next due run starts without a fork."""
        if self.keep_spare and self.spare is None:
            self.spare = self.os.spare(self._notify_w)
            self.log.debug("spare.ready", pid=self.spare.pid)

    def dismiss_spare(self) -> None:
        if self.spare is not None:
            self.spare.dismiss()
            self.os.wait_child(self.spare.pid)
            self.log.debug("spare.dismissed", pid=self.spare.pid)
            self.spare = None

    def close(self) -> None:
        self.dismiss_spare()
        for fd in (self.notify_fd, self._notify_w):
            if fd is not None:
                os.close(fd)
        self.notify_fd = self._notify_w = None

    def _targets(self, claim: Claim) -> tuple[Target, ...]:
        """The runs a `replace` claim stops first. Runs not yet started (no start token, even if
        a supervisor holds them for their slot) are simply cancelled."""
        targets = []
        for old_id in claim.replaces:
            old = self.store.run(old_id)
            if old is None or not old.open:
                continue
            files = self.recorder.files(old.job, old.id)
            if files.take_token({"cancelled_by_run": claim.run_id}):
                self._drop_queued(old.id)
                self.recorder.finish(old, Outcome.INTERRUPTED, f"replaced by run {claim.run_id} before it started")
                continue
            supervisor = files.read_supervisor() or old.supervisor
            spec = old.job_spec
            grace = spec.kill_grace if spec is not None else claim.job.kill_grace
            targets.append(Target(old.id, files.folder, supervisor, grace))
        return tuple(targets)

    def _drop_queued(self, run_id: int) -> None:
        self.queue = deque(c for c in self.queue if c.run_id != run_id)

    # hearing back -----------------------------------------------------------------------

    def reap_children(self) -> None:
        """Collect supervisors that exited (after SIGCHLD) and record their runs."""
        while self._children:
            pid = self.os.reap()
            if not pid:
                return
            if self.spare is not None and pid == self.spare.pid:  # a spare that died unused
                self.spare = None
                continue
            for run_id in self._children.pop(pid, ()):
                self.supervisor_gone(run_id)

    def wait_children(self) -> None:
        """Block until every supervisor this process forked has exited, recording each."""
        while self._children:
            pid = self.os.wait_child()
            if pid is None:
                return
            for run_id in self._children.pop(pid, ()):
                self.supervisor_gone(run_id)

    def on_notify(self) -> None:
        """Take in what the supervisors told: jobs that started (logged now, recorded RUNNING with
        the real start time by flush_started(), when the daemon is idle: a burst's starts never
        wait behind those writes) and runs that ended (recorded now)."""
        assert self.notify_fd is not None
        data = b""
        try:
            while chunk := os.read(self.notify_fd, 65536):
                data += chunk
        except BlockingIOError:
            pass
        started, ended = [], []
        for line in data.decode(errors="replace").splitlines():
            fields = line.split()
            try:
                if fields[0] == "S" and len(fields) == 5:
                    started.append((int(fields[1]), float(fields[2]), ProcId(int(fields[3]), int(fields[4]))))
                elif fields[0] == "E" and len(fields) == 2:
                    ended.append(int(fields[1]))
            except (ValueError, IndexError):
                continue  # a torn or foreign line: the result file still tells
        if started:
            self.started += started
            for run_id, at, job in started:
                w = self.watched.get(run_id)
                if w is not None and w.scheduled is not None:
                    self.fire_latency.observe(max(0.0, at - (w.scheduled - self.offset)))
                if w is not None and w.ping:
                    self.recorder.pinger.started(w.ping, self.home.root, run_id)
                self.log.info("job.started", job=w.job if w else None, run_id=run_id, job_pid=job.pid,
                              started=utc_iso(at))
        for run_id in ended:
            if run_id in self.watched:
                self._run_ended(run_id)

    def flush_started(self) -> None:
        """Record the starts the supervisors told of (a run already recorded done stays done)."""
        started, self.started = self.started, []
        if started:
            self.store.mark_started(started)

    def _run_ended(self, run_id: int) -> None:
        run = self.store.run(run_id)
        result = self.recorder.files(run.job, run.id).read_result() if run is not None else None
        if run is None or not run.open or result is None:
            return
        self.unwatch(run_id)
        self.recorder.record(run, result)

    def retry(self, run: RunRecord, result: RunResult) -> None:
        """After a scheduled run failed or timed out: claim the next attempt of its slot, to start
        after its backoff (logic/policy.py's retry_at), unless no attempt is left, the job's next
        slot would come first, or (overlap: skip) another run of the job is going on."""
        spec = run.job_spec
        if spec is None or not spec.retries or run.trigger is not Trigger.SCHEDULE or self.detach:
            return
        import random

        now = time.time() + self.offset
        try:
            at, why = retry_at(spec, run.attempt, str(result.outcome), now, self.store.next_run(run.job),
                               random.random())
            if at is not None and spec.overlap == "skip" and any(w.job == run.job for w in self.watched.values()):
                at, why = None, "another run of the job is going on (overlap: skip)"
            if at is None:
                if why:
                    self.log.info("job.retry_skipped", job=run.job, run_id=run.id, attempt=run.attempt, reason=why)
                return
            run_id = self.store.insert_retry(run.job, str(run.trigger), run.scheduled, run.attempt + 1, now,
                                             self.owner, run.spec)
        except HermesCronError as e:
            self.log.error("job.retry_failed", job=run.job, run_id=run.id, error=str(e))
            return
        if run_id is None:
            return  # that attempt was claimed already
        self.log.info("job.retry", job=run.job, run_id=run_id, attempt=run.attempt + 1, of_run=run.id,
                      at=utc_iso(at))
        self.submit([Claim(run_id, spec, run.scheduled, Trigger.SCHEDULE, start_at=at)])

    def pidfds(self) -> list[int]:
        return list(self._fds)

    def on_pidfd(self, fd: int) -> None:
        run_id = self._fds.pop(fd, None)
        self.os.close(fd)
        w = self.watched.get(run_id) if run_id is not None else None
        if w is None:
            return
        w.pidfd = None
        if w.orphan is None:
            self.supervisor_gone(w.run_id)
            return
        run = self.store.run(w.run_id)
        self.unwatch(w.run_id)
        if run is not None and run.open:
            if w.timed_out:
                self.recorder.finish(run, Outcome.TIMED_OUT, "ran past its timeout; stopped by the daemon (its "
                            "supervisor was gone, so the exit status is unknown)")
            else:
                self.recorder.finish(run, Outcome.INTERRUPTED, f"its supervisor died; the job (pid {w.orphan.pid}) "
                            "ended but its exit status can't be known")

    def supervisor_gone(self, run_id: int) -> None:
        """A supervisor we watched has exited: record its result, or find out what happened."""
        w = self.watched.get(run_id)
        self.unwatch(run_id)
        run = self.store.run(run_id)
        if run is not None and run.open:
            after_supervisor(self, run, w.supervisor if w is not None else None)

    def unwatch(self, run_id: int) -> None:
        w = self.watched.pop(run_id, None)
        if w is not None and w.pidfd is not None:
            self._fds.pop(w.pidfd, None)
            self.os.close(w.pidfd)
        self.start_queued()

    def watch(self, w: Watched) -> bool:
        """Answer for a run through a pidfd on its supervisor or orphaned job; False if that
        process can't be watched (it is gone)."""
        proc = w.orphan or w.supervisor
        assert proc is not None
        w.pidfd = self.os.pidfd(proc.pid)
        self.watched[w.run_id] = w
        if w.pidfd is not None:
            self._fds[w.pidfd] = w.run_id
        return w.pidfd is not None

    def recover(self, now: float, unchanged: bool = False) -> None:
        """Record finished results, and settle the runs in flight that nobody alive answers for.
        `unchanged`: nobody wrote to the store since the last recover (the tick found it so); if
        that one left no run open, none can be now, and the store is not read."""
        if unchanged and self._none_open:
            return
        queued = {c.run_id for c in self.queue}
        still_open = self.recorder.collect()
        self._none_open = not still_open
        for run in still_open:
            if run.id not in self.watched and run.id not in queued:
                adopt(self, run, now)

    # orphaned jobs' timeouts (supervisors enforce their own) ----------------------------

    def enforce(self, now: float) -> None:
        for w in list(self.watched.values()):
            if w.orphan is None:
                continue
            if w.timeout_at is not None and not w.timed_out and now >= w.timeout_at:
                w.timed_out = True
                self.os.killpg(w.orphan.pid, signal.SIGTERM)
                w.kill_at = now + w.kill_grace
                self.log.warning("job.timeout", job=w.job, run_id=w.run_id, job_pid=w.orphan.pid)
            if w.kill_at is not None and now >= w.kill_at:
                self.os.killpg(w.orphan.pid, signal.SIGKILL)
                w.kill_at = None

    def next_deadline(self) -> float | None:
        deadlines = [d for w in self.watched.values() if w.orphan is not None
                     for d in ((w.timeout_at if not w.timed_out else None), w.kill_at) if d is not None]
        return min(deadlines) if deadlines else None
