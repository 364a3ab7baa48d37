"""The supervisor's loop: start each run of its batch at its slot (never before), once it holds
the run's start token; copy the job's output into a capped file; enforce the timeout; and write
the outcome (a RunResult) to the run's folder. It never touches the store: whoever watches the
run records it. Forked by engine/spawn.py, which also sets up the process it runs in.

When the daemon gave it a notice pipe, the supervisor tells it as things happen, one line
each (shorter than PIPE_BUF, so never interleaved): `S RUNID STARTED PID START` when a job has
started (the daemon records the run RUNNING with that time) and `E RUNID` when its result is
written. A notice that doesn't fit the pipe is dropped: the result file is the record.
"""

from __future__ import annotations

import math
import os
import select
import time

from hermes_cron import faults
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.engine import hold
from hermes_cron.engine.jobrun import LEASE_CHECK, _Run, load_popen
from hermes_cron.engine.launch import Launch
from hermes_cron.engine.stopping import stop_target
from hermes_cron.logic.run import Outcome, RunResult
from hermes_cron.store.runfiles import STOP, RunFiles, supervisor_token

MAX_POLL_MS = 2**31 - 1  # poll() takes at most this (24.8 days): a longer wait is made in steps
HOLD_AHEAD = 5.0  # a run's process is made and held (engine/hold.py) at most this long before its slot,
HOLD_MARGIN = 0.004  # and only while the first slot is further off than this;
HOLD_EACH = 0.003  # a hold takes ~2 ms of a core here, 3-12 ms of wall time when a burst's supervisors
HOLD_CHUNK = 16  # share the cores: so many runs are held at once as fit before the first slot at the
# pace the last chunk took (at least HOLD_EACH each), with room to spare, and at most HOLD_CHUNK
# (with a look at events between). A chunk can't be cut short once forked: sized at a fixed 3 ms,
# a chunk begun 40 ms before the slot took 180 ms on a busy machine, and its supervisor's first
# start came 140 ms late.
SPIN = 0.0003  # the last this much before a slot is waited for on the CPU, not with a timer


class StopFlag:
    """Set by SIGTERM (engine/spawn.py installs it); the loop acts on it."""

    def __init__(self) -> None:
        self.requested = False

    def set(self, signum: int, frame: object) -> None:
        self.requested = True


class Supervisor:
    """Starts a batch of runs, each at its slot, and watches them to their ends."""

    def __init__(self, launches: list[Launch], stop: StopFlag, wake_r: int, notify_fd: int | None):
        self.stop_flag = stop
        self.wake_r = wake_r
        self.notify_fd = notify_fd
        self.me = ProcId.me()
        self.pending = [_Run(launch, supervisor_token(launch.run_id, self.me))
                        for launch in sorted(launches, key=lambda x: x.start_at or 0.0)]
        self.active: dict[int, _Run] = {}  # by run id
        self.by_fd: dict[int, tuple[_Run, str]] = {}
        self.poller = select.poll()
        self.poller.register(wake_r, select.POLLIN)
        self.hold_pace = HOLD_EACH  # the wall time each hold of the last chunk took

    def run(self) -> int:
        # (The daemon's raised limit on open files is kept: a burst holds several descriptors
        # per run. Each job gets the original limit back: engine/jobrun.py, engine/hold.py.)
        while self.pending or self.active:
            self._start_due()
            if self.stop_flag.requested:
                self.stop_flag.requested = False
                self._stop_requested()
            holding = self._hold_ahead()
            now = time.monotonic()
            for r in list(self.active.values()):
                r.check_lease()
                r.enforce(now)
                if r.over(now):
                    self._finish(r, r.result())
            if not self.pending and not self.active:
                break
            waits = [d - now + 0.001 for r in self.active.values() for d in r.deadlines()]
            waits += [LEASE_CHECK for r in self.active.values() if r.launch.lease_until is not None]
            if self.pending:  # wake just before the slot; _start_due sleeps the last stretch exactly
                waits.append((self.pending[0].launch.start_at or 0.0) - time.time() - 0.0015)
            if holding is not None:
                waits.append(holding)
            wait_ms = None if not waits else min(max(0, math.ceil(min(waits) * 1000)), MAX_POLL_MS)
            for fd, _ in self.poller.poll(wait_ms):
                self._on_event(fd)
        return 0

    def _start_due(self) -> None:
        started: list[_Run] = []
        while self.pending:
            start_at = self.pending[0].launch.start_at
            if start_at is not None and start_at > time.time():
                if self.active or start_at - time.time() > 0.002:
                    break
                while (left := start_at - time.time()) > SPIN:
                    time.sleep(left - SPIN)
                while time.time() < start_at:  # the last stretch spun: a timer wakes ~0.13 ms late here
                    pass  # (never before its time)
            now = time.time()
            due = []
            while self.pending and (self.pending[0].launch.start_at or 0.0) <= now:
                due.append(self.pending.pop(0))
            due.sort(key=lambda r: r.held is None)  # the held first: letting one go takes ~20 us, a start ~1 ms
            for r in due:
                self._start(r, started)
        for r in started:  # after the starts, so that none waits for another's bookkeeping
            r.record_job()
            for fd, kind in ((r.read_fd, "out"), (r.pidfd, "exit")):
                self.by_fd[fd] = (r, kind)
                self.poller.register(fd, select.POLLIN)
        if started:  # after the starts, so telling never delays one
            self._tell("".join(f"S {r.launch.run_id} {r.started_at!r} {r.proc.pid if r.proc else 0} {r.job_start}\n"
                               for r in started))

    def _start(self, r: _Run, started: list[_Run]) -> None:
        faults.hit("supervisor.start")
        if r.unusable is not None:
            return  # never started; whoever records the run reads why from its folder
        if not r.take_token():
            r.close()
            return  # another process started (or abandoned) this run
        end = r.lease_end()
        if end is not None and time.time() >= end:
            self._finish(r, r.ended(Outcome.INTERRUPTED, "not started: its lease on the shared store ran out "
                                    "before its slot (this node was fenced)"))
            return
        for target in r.launch.targets:
            stop_target(target, f"replaced by run {r.launch.run_id}")
        failed = r.start()
        if failed is not None:
            self._finish(r, failed)
            return
        started.append(r)
        self.active[r.launch.run_id] = r

    def _hold_ahead(self) -> float | None:
        """Make and hold the processes of the runs due soon, a few at a time, while the first
        slot is far enough off. Returns when to come back for more: 0 (at once, after a look at
        the events), the time until the next run comes within HOLD_AHEAD of its slot, or None."""
        untried = [r for r in self.pending if not r.hold_tried and r.launch.start_at is not None]
        first = self.pending[0].launch.start_at if self.pending else None
        if not untried or first is None:
            return None
        now = time.time()
        count = min(HOLD_CHUNK, int((first - now - HOLD_MARGIN) / (2 * self.hold_pace)))
        if count <= 0:
            return None  # too near the slot: these start the ordinary way (later ones, after it)
        soon = [r for r in untried if r.launch.start_at - now <= HOLD_AHEAD][:count]
        if not soon:
            return untried[0].launch.start_at - HOLD_AHEAD - now  # (pending runs are in slot order)
        batch = []
        for r in soon:
            r.hold_tried = True
            request = r.hold_request()
            if request is not None:
                batch.append((r, request))
        try:
            held = hold.hold_all([request for _, request in batch])
        except OSError:
            held = [None] * len(batch)
        if batch:
            self.hold_pace = max(HOLD_EACH, (time.time() - now) / len(batch))
        for (r, _), h in zip(batch, held):
            r.held_as(h)
        if any(r.held is None for r in soon):
            load_popen()  # those start the ordinary way: its module loaded now, not on the slot
        return 0.0 if len(untried) > len(soon) else None

    def _on_event(self, fd: int) -> None:
        if fd == self.wake_r:
            os.read(self.wake_r, 512)
            return
        r, kind = self.by_fd[fd]
        if kind == "out":
            if not r.on_output():
                self._forget(fd)
        else:
            self._forget(fd)
            r.on_exit()

    def _forget(self, fd: int) -> None:
        self.poller.unregister(fd)
        del self.by_fd[fd]

    def _stop_requested(self) -> None:
        """SIGTERM: stop the runs that have a stop request, started or still waiting for their
        slot; with none, stop every run."""
        asked = [r for r in self.active.values() if r.files.has(STOP)]
        waiting = [r for r in self.pending if r.files.has(STOP)]
        if not asked and not waiting:
            asked, waiting = list(self.active.values()), list(self.pending)
        for r in asked:
            r.stop(Outcome.INTERRUPTED, read_stop_reason(r.files))
        for r in waiting:
            self.pending.remove(r)
            if r.unusable is None and r.take_token():
                reason = read_stop_reason(r.files) if r.files.has(STOP) else "its supervisor was stopped"
                self._finish(r, r.ended(Outcome.INTERRUPTED, f"{reason} before the slot came"))

    def _finish(self, r: _Run, result: RunResult) -> None:
        for fd in [fd for fd, (owner, _) in self.by_fd.items() if owner is r]:
            self._forget(fd)
        self.active.pop(r.launch.run_id, None)
        try:
            r.write_result(result.to_json())
        finally:
            r.close()
        self._tell(f"E {r.launch.run_id}\n")

    def _tell(self, lines: str) -> None:
        if self.notify_fd is not None:
            try:
                os.write(self.notify_fd, lines.encode())
            except OSError:  # a daemon that is busy or gone: it finds the result file later
                pass


def read_stop_reason(files: RunFiles) -> str:
    raw = files.read(STOP)
    if raw is None:
        return "stopped by SIGTERM"
    return raw.decode(errors="replace").strip()[:500] or "stopped on request"
