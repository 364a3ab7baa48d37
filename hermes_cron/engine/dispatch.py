"""After the tick lock: starting claimed runs, watching them, recording how they ended, and
taking over the runs of processes that died (adoption).

The dispatcher never holds the tick lock. Its database writes are short transactions that
touch only run rows, so they can't undo an edit made to jobs.json meanwhile.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from hermes_cron import faults

from hermes_cron.engine import runner
from hermes_cron.logic.jobs import Job
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.errors import HermesCronError
from hermes_cron.contract.files import remove_tree
from hermes_cron.engine.runner import CRASH_FILE, RUN_DEPTH, Launch, RunFiles, Spare, Target
from hermes_cron.logic.settle import Action, Facts, Token, read_token, settle
from hermes_cron.store.sqlite import Run, State
from hermes_cron.engine.ticker import Claim
from hermes_cron.logic.zones_lite import utc_iso


BATCH = 32  # runs per supervisor in a burst: one fork per batch instead of per run


@dataclass
class Watched:
    """A run this process answers for: a supervisor it forked, or an adopted process."""

    run_id: int
    job: str
    kill_grace: float
    reaper: ProcId | None = None
    orphan: ProcId | None = None  # a job whose supervisor is gone: we enforce its timeout
    pidfd: int | None = None
    timeout_at: float | None = None
    kill_at: float | None = None
    timed_out: bool = False


class Dispatcher:
    def __init__(self, home: Home, state: State, owner: ProcId, log: Any,
                 max_concurrent: int | None = None, detach: bool = False,
                 nofile: tuple[int, int] | None = None, spare: bool = False):
        self.home = home
        self.state = state
        self.owner = owner
        self.log = log
        self.max_concurrent = max_concurrent
        self.detach = detach
        self.nofile = nofile
        self.watched: dict[int, Watched] = {}
        self._children: dict[int, list[int]] = {}  # supervisor pid -> its run ids
        self._fds: dict[int, int] = {}  # pidfd -> run id
        self.queue: deque[Claim] = deque()
        self.keep_spare = spare and not detach
        self.spare: Spare | None = None
        # Supervisors write a run's id here as soon as it ends, so it is recorded at once even
        # when its supervisor has other runs still going. Non-blocking for the writers: a
        # notice that doesn't fit is not lost, only late (the tick finds the result file).
        self.notify_fd: int | None = None
        self._notify_w: int | None = None
        if spare and not detach:
            self.notify_fd, self._notify_w = os.pipe()
            os.set_blocking(self.notify_fd, False)
            os.set_blocking(self._notify_w, False)

    def files(self, job: str, run_id: int) -> RunFiles:
        return RunFiles(self.home.run_dir(job, run_id))

    # starting ---------------------------------------------------------------------------

    def submit(self, claims: list[Claim]) -> None:
        """Start the claims (as many as max_concurrent allows; the rest wait in the queue).
        Events are logged after the processes are started, to keep logging off the latency."""
        self.queue.extend(claims)
        self.start_queued(announce=claims)

    def _has_room(self, batched: int = 0) -> bool:
        return self.max_concurrent is None or len(self.watched) + batched < self.max_concurrent

    def start_queued(self, announce: list[Claim] | tuple[Claim, ...] = ()) -> None:
        """Hand queued claims to supervisors: the spare takes the first batch, each further batch
        of up to BATCH runs costs one fork. A run that replaces others gets a supervisor of its
        own, since it waits for them to stop before it starts."""
        started: list[tuple[Claim, ProcId | None, float]] = []
        if self.queue:
            faults.hit("dispatch.claimed")
        batch: list[Claim] = []
        while self.queue and self._has_room(len(batch)):
            claim = self.queue.popleft()
            if claim.replaces:
                started += self._launch([claim])
            else:
                batch.append(claim)
                if len(batch) == BATCH:
                    started += self._launch(batch)
                    batch = []
        if batch:
            started += self._launch(batch)
        for claim in announce:
            self.log.info("job.claimed", job=claim.job.name, run_id=claim.run_id, trigger=claim.trigger,
                          scheduled=utc_iso(claim.scheduled), replaces=list(claim.replaces) or None)
        if not started:
            return
        with self.state.transaction():
            for claim, reaper, at in started:
                values: dict[str, Any] = {"state": "running", "started_at": max(at, claim.scheduled or at)}
                if reaper is not None:
                    values.update(reaper_pid=reaper.pid, reaper_start=reaper.start)
                self.state.update_run(claim.run_id, **values)
        for claim, reaper, _ in started:
            self.log.info("job.started", job=claim.job.name, run_id=claim.run_id,
                          scheduled=utc_iso(claim.scheduled), trigger=claim.trigger,
                          supervisor_pid=reaper.pid if reaper else None)

    def _launch(self, claims: list[Claim]) -> list[tuple[Claim, ProcId | None, float]]:
        launches = [Launch.of(c.run_id, c.job, c.scheduled, self.home.run_dir(c.job.name, c.run_id),
                              self.home.root, self._targets(c), self.nofile) for c in claims]
        if self.spare is not None:
            spare, self.spare = self.spare, None
            pid = spare.assign(launches)
        else:
            pid = runner.spawn(launches, self._notify_w, self.detach)
        reaper = ProcId.of(pid) if pid else None
        at = time.time()
        if not self.detach:
            self._children[pid] = [c.run_id for c in claims]
            for c in claims:
                self.watched[c.run_id] = Watched(c.run_id, c.job.name, c.job.kill_grace, reaper=reaper)
        return [(c, reaper, at) for c in claims]

    @property
    def wants_spare(self) -> bool:
        return self.keep_spare and self.spare is None

    def ready_spare(self) -> None:
        """Keep a supervisor forked and waiting, so the next due run starts without a fork."""
        if self.keep_spare and self.spare is None:
            self.spare = Spare(self._notify_w)

    def dismiss_spare(self) -> None:
        if self.spare is not None:
            self.spare.dismiss()
            try:
                os.waitpid(self.spare.pid, 0)
            except ChildProcessError:
                pass
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
            old = self.state.run(old_id)
            if old is None or old.state == "done":
                continue
            files = self.files(old.job, old.id)
            if files.take_token({"cancelled_by_run": claim.run_id}):
                self._drop_queued(old.id)
                self.finish(old, "interrupted", reason=f"replaced by run {claim.run_id} before it started")
                continue
            reaper = files.read_reaper() or _proc(old.reaper_pid, old.reaper_start)
            spec = old.job_spec
            grace = spec.kill_grace if spec is not None else claim.job.kill_grace
            targets.append(Target(old.id, files.folder, reaper, grace))
        return tuple(targets)

    def _drop_queued(self, run_id: int) -> None:
        self.queue = deque(c for c in self.queue if c.run_id != run_id)

    # ending -----------------------------------------------------------------------------

    def reap_children(self) -> None:
        """Collect supervisors that exited (after SIGCHLD) and record their runs."""
        while self._children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare.pid:  # a spare that died unused
                self.spare = None
                continue
            for run_id in self._children.pop(pid, ()):
                self._supervisor_gone(run_id)

    def wait_children(self) -> None:
        """Block until every supervisor this process forked has exited, recording each."""
        while self._children:
            pid, _ = os.waitpid(-1, 0)
            for run_id in self._children.pop(pid, ()):
                self._supervisor_gone(run_id)

    def on_notify(self) -> None:
        """Record the runs whose supervisors announced their end."""
        assert self.notify_fd is not None
        data = b""
        try:
            while chunk := os.read(self.notify_fd, 65536):
                data += chunk
        except BlockingIOError:
            pass
        for line in data.split():
            run_id = int(line)
            if run_id in self.watched:
                self._run_ended(run_id)

    def _run_ended(self, run_id: int) -> None:
        run = self.state.run(run_id)
        result = self.files(run.job, run.id).read_result() if run is not None else None
        if run is None or run.state == "done" or result is None:
            return
        self._unwatch(run_id)
        self.record(run, result)

    def pidfds(self) -> list[int]:
        return list(self._fds)

    def on_pidfd(self, fd: int) -> None:
        run_id = self._fds.pop(fd, None)
        os.close(fd)
        if run_id is None:
            return
        w = self.watched.get(run_id)
        if w is None:
            return
        w.pidfd = None
        if w.orphan is not None:
            run = self.state.run(run_id)
            self._unwatch(run_id)
            if run is not None and run.state != "done":
                if w.timed_out:
                    self.finish(run, "timed_out", reason="ran past its timeout; stopped by the daemon "
                                "(its supervisor was gone, so the exit status is unknown)")
                else:
                    self.finish(run, "interrupted", reason=f"its supervisor died; the job (pid {w.orphan.pid}) "
                                "ended but its exit status can't be known")
            return
        self._supervisor_gone(run_id)

    def _supervisor_gone(self, run_id: int) -> None:
        """A supervisor we watched has exited: record its result, or find out what happened."""
        w = self.watched.get(run_id)
        self._unwatch(run_id)
        run = self.state.run(run_id)
        if run is None or run.state == "done":
            return
        files = self.files(run.job, run.id)
        result = files.read_result()
        if result is not None:
            self.record(run, result)
            return
        token = files.read_token()
        ours = w is not None and w.reaper is not None and token is not None \
            and token.get("reaper_pid") == w.reaper.pid
        crashed = None
        crash = files.read(CRASH_FILE)
        if crash is not None:
            text = crash.decode(errors="replace")
            self.log.error("supervisor.crashed", job=run.job, run_id=run.id, traceback=text)
            last = text.strip().splitlines()[-1] if text.strip() else "unknown error"
            crashed = f"its supervisor crashed ({last[:300]}); the exit status is unknown"
        if token is None:
            unsafe = files.unsafe()
            if unsafe is not None:
                self.log.error("run.unsafe_folder", job=run.job, run_id=run.id, error=unsafe)
            self.finish(run, "interrupted", reason=f"not started: {unsafe}" if unsafe else
                        crashed or "its supervisor exited before it could start the job")
            return
        if not ours:
            return  # another process holds the start token: recover() settles it
        job = files.read_job_pid()
        if job is not None and job.alive():
            self._watch_orphan(run, job)
            return
        self.finish(run, "interrupted", reason=crashed or "its supervisor ended without recording the outcome; "
                    "the exit status is unknown")

    def _unwatch(self, run_id: int) -> None:
        w = self.watched.pop(run_id, None)
        if w is not None and w.pidfd is not None:
            self._fds.pop(w.pidfd, None)
            os.close(w.pidfd)
        self.start_queued()

    def record(self, run: Run, result: dict) -> None:
        """Record a supervisor's result file as the run's outcome."""
        self.finish(
            run, result.get("status") or "failed",
            exit_code=result.get("exit_code"), signal=result.get("signal"), reason=result.get("reason"),
            started_at=result.get("started_at"), ended_at=result.get("ended_at"),
            job_pid=result.get("job_pid"), job_start=result.get("job_start"),
            output=result.get("output"), output_bytes=result.get("output_bytes"),
        )

    def finish(self, run: Run, status: str, **values: Any) -> bool:
        values.setdefault("ended_at", time.time())
        spec = run.job_spec
        keep = spec.keep_runs if spec is not None else None
        with self.state.transaction():
            changed = self.state.update_run(run.id, state="done", status=status, **values)
            pruned = self.state.prune(run.job, keep) if (changed and keep) else []
        for old in pruned:
            self._remove_run_folder(run.job, old)
        if changed:
            ended = values.get("ended_at")
            started = values.get("started_at") or run.started_at
            fields = dict(job=run.job, run_id=run.id, status=status, exit_code=values.get("exit_code"),
                          signal=values.get("signal"),
                          duration_s=round(ended - started, 3) if (ended and started) else None)
            if values.get("reason"):
                fields["reason"] = values["reason"]
            if status == "succeeded":
                self.log.info("job.finished", **fields)
            else:
                self.log.warning("job.finished", **fields)
        return changed

    def _remove_run_folder(self, job: str, run_id: int) -> None:
        """Delete a pruned run's folder through descriptors (fsutil.remove_tree): a symlink on
        the way or inside is never followed, so nothing outside the home is ever deleted."""
        folder, name = os.path.split(self.home.run_dir(job, run_id))
        try:
            remove_tree(folder, name, RUN_DEPTH - 1)
        except FileNotFoundError:
            pass
        except (OSError, HermesCronError) as e:
            self.log.error("run.prune_failed", job=job, run_id=run_id, error=str(e))

    # adoption ---------------------------------------------------------------------------

    def collect(self) -> list[Run]:
        """Record every finished run whose result file waits; return the runs still open."""
        still_open = []
        for run in self.state.open_runs():
            result = self.files(run.job, run.id).read_result()
            if result is not None:
                self.record(run, result)
            else:
                still_open.append(run)
        return still_open

    def recover(self, now: float) -> None:
        """Settle runs in flight that nobody alive answers for, and record finished results."""
        queued = {c.run_id for c in self.queue}
        for run in self.collect():
            if run.id not in self.watched and run.id not in queued:
                self._adopt(run, self.files(run.job, run.id), now)

    def _take_over(self, run: Run) -> bool:
        """Make this process the run's owner, unless another process got there first."""
        with self.state.transaction():
            cur = self.state.conn.execute(
                "UPDATE runs SET owner_pid = ?, owner_start = ? WHERE id = ? AND state != 'done' "
                "AND owner_pid IS ? AND owner_start IS ?",
                (self.owner.pid, self.owner.start, run.id, run.owner_pid, run.owner_start),
            )
            return cur.rowcount > 0

    def facts(self, run: Run, files: RunFiles, now: float) -> Facts:
        """What is durably known about a run in flight: its record, its token, its processes."""
        token, detail = read_token(files.read_token(), files.has("start"))
        handed = _proc(run.reaper_pid, run.reaper_start)
        in_token = files.read_reaper() if token is Token.SUPERVISOR else None
        job = files.read_job_pid() if token is Token.SUPERVISOR else None
        owner = _proc(run.owner_pid, run.owner_start)
        spec = run.job_spec
        return Facts(
            state=run.state, token=token, token_detail=detail, scheduled=run.scheduled,
            claimed_at=run.claimed_at, misfire_grace=spec.misfire_grace if spec is not None else None,
            handed_supervisor_alive=handed is not None and handed.alive(),
            token_supervisor_alive=in_token is not None and in_token.alive(),
            job_alive=job is not None and job.alive(),
            owned_by_other_live_process=owner is not None and owner != self.owner and owner.alive(),
            now=now, owner_pid=run.owner_pid, handed_supervisor_pid=run.reaper_pid)

    def _adopt(self, run: Run, files: RunFiles, now: float) -> None:
        """Carry out what settle() decides for a run nobody alive answers for."""
        decision = settle(self.facts(run, files, now))
        action = decision.action
        if action is Action.LEAVE:
            return
        if action is Action.START:
            job_def = run.job_spec
            if job_def is not None and self._take_over(run):
                self.log.warning("job.adopted", job=run.job, run_id=run.id, action="start",
                                 previous_owner=run.owner_pid, late_s=round(float(decision.reason), 3))
                self.queue.append(Claim(run.id, job_def, run.scheduled, run.trigger, run.replaced_ids))
                self.start_queued()
            return
        if action in (Action.ABANDON, Action.CANCEL):
            try:
                taken = files.take_token({"abandoned_by": self.owner.pid})
            except (OSError, HermesCronError) as e:  # its folder can't be used (a symlink, say)
                self.finish(run, "interrupted", reason=f"{decision.reason}; its folder can't be used: {e}")
                return
            if taken:
                self.finish(run, "interrupted", reason=decision.reason)
            elif action is Action.CANCEL:  # the supervisor took the token a moment ago: settle again
                self._adopt(run, files, now)
            return
        if action is Action.WATCH_SUPERVISOR:
            supervisor = files.read_reaper() or _proc(run.reaper_pid, run.reaper_start)
            if supervisor is not None and self._take_over(run):
                self._watch_reaper(run, supervisor, run.job_spec)
            return
        if action is Action.WATCH_JOB:
            job = files.read_job_pid()
            if job is not None and self._take_over(run):
                self._watch_orphan(run, job)
            return
        result = files.read_result()  # Action.INTERRUPT, unless the result came meanwhile
        if result is not None:
            self.record(run, result)
        else:
            self.finish(run, "interrupted", reason=decision.reason)

    def _open_pidfd(self, pid: int) -> int | None:
        try:
            return os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            return None

    def _watch_reaper(self, run: Run, reaper: ProcId, job_def: Job | None) -> None:
        fd = self._open_pidfd(reaper.pid)
        w = Watched(run.id, run.job, job_def.kill_grace if job_def else 10.0, reaper=reaper, pidfd=fd)
        self.watched[run.id] = w
        if fd is not None:
            self._fds[fd] = run.id
        self.log.warning("job.adopted", job=run.job, run_id=run.id, action="watch",
                         supervisor_pid=reaper.pid, previous_owner=run.owner_pid)
        if fd is None or not reaper.alive():
            self._supervisor_gone(run.id)

    def _watch_orphan(self, run: Run, job: ProcId) -> None:
        job_def = run.job_spec
        fd = self._open_pidfd(job.pid)
        timeout_at = None
        if job_def is not None and job_def.timeout:
            timeout_at = job.started_at() + job_def.timeout
        w = Watched(run.id, run.job, job_def.kill_grace if job_def else 10.0, orphan=job, pidfd=fd,
                    timeout_at=timeout_at)
        self.watched[run.id] = w
        if fd is not None:
            self._fds[fd] = run.id
        self.log.warning("job.adopted", job=run.job, run_id=run.id, action="watch-orphan",
                         job_pid=job.pid, previous_owner=run.owner_pid)
        if fd is None:
            self._unwatch(run.id)
            self.finish(run, "interrupted", reason="its supervisor died and the job could not be watched")

    def enforce(self, now: float) -> None:
        """Timeouts of adopted orphan jobs (supervisors enforce their own)."""
        for w in list(self.watched.values()):
            if w.orphan is None:
                continue
            if w.timeout_at is not None and not w.timed_out and now >= w.timeout_at:
                w.timed_out = True
                _killpg(w.orphan.pid, signal.SIGTERM)
                w.kill_at = now + w.kill_grace
                self.log.warning("job.timeout", job=w.job, run_id=w.run_id, job_pid=w.orphan.pid)
            if w.kill_at is not None and now >= w.kill_at:
                _killpg(w.orphan.pid, signal.SIGKILL)
                w.kill_at = None

    def next_deadline(self) -> float | None:
        deadlines = [d for w in self.watched.values() if w.orphan is not None
                     for d in ((w.timeout_at if not w.timed_out else None), w.kill_at) if d is not None]
        return min(deadlines) if deadlines else None


def _proc(pid: Any, start: Any) -> ProcId | None:
    if pid is None or start is None:
        return None
    return ProcId(int(pid), int(start))


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
