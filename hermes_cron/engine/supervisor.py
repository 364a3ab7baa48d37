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

import errno
import math
import os
import resource
import select
import signal
import subprocess
import time

from hermes_cron import faults
from hermes_cron.contract.files import open_private, write_at
from hermes_cron.contract.procinfo import ProcId, start_ticks
from hermes_cron.engine.launch import Launch
from hermes_cron.engine.stopping import group_alive, killpg, stop_target
from hermes_cron.errors import HomeError
from hermes_cron.logic.hermes import RUNNER_SAYS
from hermes_cron.logic.run import Outcome, RunResult
from hermes_cron.store.runfiles import JOB_PID, LEASE, OUTPUT, RESULT, STOP, RunFiles, supervisor_token

MAX_POLL_MS = 2**31 - 1  # poll() takes at most this (24.8 days): a longer wait is made in steps
DRAIN_AFTER_EXIT = 1.0  # how long to wait for output from leftover children once the job exited
LEASE_CHECK = 1.0  # shared store: how often a run's lease file is read
MARKER = b"\n[... hermes-cron: %d bytes omitted ...]\n"


class StopFlag:
    """Set by SIGTERM (engine/spawn.py installs it); the loop acts on it."""

    def __init__(self) -> None:
        self.requested = False

    def set(self, signum: int, frame: object) -> None:
        self.requested = True


class CappedOutput:
    """Writes a stream to a file, keeping at most `cap` bytes: the head, a marker, the tail."""

    def __init__(self, fd: int, cap: int):
        self.fd = fd
        self.cap = cap
        self.head = cap // 2
        self.total = 0
        self._tail = bytearray()
        self._keep_tail = cap - self.head - len(MARKER % (10**12))

    def write(self, data: bytes) -> None:
        if self.total < self.cap:
            room = self.cap - self.total
            os.write(self.fd, data[:room])
        self.total += len(data)
        self._tail += data
        if len(self._tail) > 2 * self._keep_tail:
            del self._tail[: len(self._tail) - self._keep_tail]

    def tail(self, n: int) -> bytes:
        return bytes(self._tail[-n:])

    def finish(self) -> bool:
        """Fix up the file; True if bytes were dropped."""
        if self.total <= self.cap:
            return False
        tail = bytes(self._tail[-self._keep_tail :])
        omitted = self.total - self.head - len(tail)
        os.ftruncate(self.fd, self.head)
        os.pwrite(self.fd, (MARKER % omitted) + tail, self.head)
        return True


def job_environment(launch: Launch) -> tuple[dict[str, str], str]:
    env = dict(os.environ)
    env.update(launch.env)
    env.update(
        HERMES_CRON_JOB=launch.name,
        HERMES_CRON_RUN_ID=str(launch.run_id),
        HERMES_CRON_SCHEDULED="" if launch.scheduled is None else repr(launch.scheduled),
        HERMES_HOME=launch.home_root,
    )
    return env, launch.cwd or env.get("HOME") or "/"


class _Run:
    """One run under a supervisor, from its start to its result file."""

    def __init__(self, launch: Launch, token: str):
        self.launch = launch
        self.files = launch.files
        self.token = token
        self.env, self.cwd = job_environment(launch)
        self.proc: subprocess.Popen | None = None
        self.out: CappedOutput | None = None
        self.out_fd = self.read_fd = self.pidfd = -1
        self.started_at: float | None = None
        self.job_start = 0
        self.timeout_at: float | None = None
        self.kill_at: float | None = None
        self.drain_until: float | None = None
        self.outcome: Outcome | None = None  # set when the supervisor stops the job itself
        self.reason: str | None = None
        self.pipe_open = False
        self.dir_fd = -1
        self.unusable: str | None = None  # why the run's folder can't be used: the run isn't started
        self.lease_check = 0.0  # shared store: when to read the lease file next
        try:
            self.dir_fd = self.files.open(create=True)
        except (OSError, HomeError) as e:
            self.unusable = str(e)

    def lease_end(self) -> float | None:
        """Shared store: when this run must stop unless its lease is renewed (the lease file the
        daemon keeps, else the deadline it was launched with); None with no lease."""
        if self.launch.lease_until is None:
            return None
        raw = self.files.read(LEASE)
        try:
            return float(raw) if raw else self.launch.lease_until
        except ValueError:
            return self.launch.lease_until

    def check_lease(self) -> None:
        """Stop the job before a peer may take its run over: this host lost its lease."""
        now = time.time()
        if self.launch.lease_until is None or now < self.lease_check:
            return
        self.lease_check = now + LEASE_CHECK
        end = self.lease_end()
        if end is not None and now >= end:
            self.stop(Outcome.INTERRUPTED, "fenced: its lease on the shared store was not renewed in time "
                      "(daemon gone, store unreachable, or host frozen); stopped before a peer could take it over")

    def ended(self, outcome: Outcome, reason: str | None, exit_code: int | None = None,
              output_bytes: int = 0) -> RunResult:
        """The result of a run that ends without its job running to an exit status of its own."""
        return RunResult(outcome, time.time(), self.started_at, exit_code, None, reason, output=self.files.output,
                         output_bytes=output_bytes)

    def start(self) -> RunResult | None:
        """Start the job; returns a finished result if it could not be started."""
        self.started_at = time.time()
        try:
            self.out_fd = open_private(self.dir_fd, OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except (OSError, HomeError) as e:
            why = "it is a symbolic link" if getattr(e, "errno", None) == errno.ELOOP else str(e)
            return self.ended(Outcome.FAILED, f"not started: can't open {self.files.output}: {why}")
        self.out = CappedOutput(self.out_fd, self.launch.output_cap)
        self.read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                self.launch.argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, cwd=self.cwd,
                env=self.env, start_new_session=True, close_fds=True,
            )
        except OSError as e:
            os.close(write_fd)
            os.close(self.read_fd)
            code, message = start_failure(e, self.launch.argv[0], self.cwd)
            os.write(self.out_fd, (message + "\n").encode())
            os.close(self.out_fd)
            return self.ended(Outcome.FAILED, message, code, len(message) + 1)
        os.close(write_fd)
        self.pipe_open = True
        self.job_start = start_ticks(self.proc.pid) or 0
        self.files.write(JOB_PID, f"{self.proc.pid} {self.job_start} {self.started_at!r}\n".encode(), self.dir_fd)
        self.pidfd = os.pidfd_open(self.proc.pid)
        if self.launch.timeout:
            self.timeout_at = time.monotonic() + self.launch.timeout
        return None

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def stop(self, outcome: Outcome, reason: str) -> None:
        if self.proc is None or self.proc.returncode is not None or self.outcome is not None:
            return
        self.outcome, self.reason = outcome, reason
        killpg(self.proc.pid, signal.SIGTERM)
        self.kill_at = time.monotonic() + self.launch.kill_grace

    def deadlines(self) -> list[float]:
        return [d for d in (self.timeout_at if self.outcome is None else None, self.kill_at, self.drain_until)
                if d is not None]

    def enforce(self, now: float) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None and self.timeout_at is not None and now >= self.timeout_at:
            self.stop(Outcome.TIMED_OUT, f"ran longer than its timeout of {self.launch.timeout:g} s")
        if self.kill_at is not None and now >= self.kill_at:
            killpg(self.proc.pid, signal.SIGKILL)
            self.kill_at = None

    def on_output(self) -> bool:
        """Copy what the job wrote; False at end of file."""
        data = os.read(self.read_fd, 65536)
        if data:
            assert self.out is not None
            self.out.write(data)
            return True
        self.pipe_open = False
        return False

    def on_exit(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        self.drain_until = time.monotonic() + DRAIN_AFTER_EXIT
        if self.kill_at is not None and not group_alive(self.proc.pid):
            self.kill_at = None

    def over(self, now: float) -> bool:
        if self.proc is None or self.proc.returncode is None:
            return False
        return not self.pipe_open or (self.drain_until is not None and now >= self.drain_until)

    def result(self) -> RunResult:
        assert self.proc is not None and self.out is not None
        os.close(self.pidfd)
        os.close(self.read_fd)
        if self.kill_at is not None:  # the job is gone; give what is left of its group the same end
            killpg(self.proc.pid, signal.SIGKILL)
        returncode = self.proc.returncode
        truncated = self.out.finish()
        os.close(self.out_fd)
        outcome = self.outcome or (Outcome.SUCCEEDED if returncode == 0 else Outcome.FAILED)
        reason = self.reason
        if self.outcome is None and self.launch.skip_code is not None and returncode != 0:
            said = runner_said(bytes(self.out.tail(4096)))
            if returncode == self.launch.skip_code:
                outcome, reason = Outcome.SKIPPED, said.removeprefix("skipped: ") if said else "skipped"
            elif said:
                reason = said
        if reason is None and returncode == 127 and self.launch.argv[:2] == ("/bin/sh", "-c"):
            reason = "command not found (the shell exited 127)"
        return RunResult(outcome, time.time(), self.started_at, returncode if returncode >= 0 else None,
                         -returncode if returncode < 0 else None, reason, self.proc.pid, self.job_start,
                         self.files.output, self.out.total, truncated, group_alive(self.proc.pid))


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

    def run(self) -> int:
        if self.pending and self.pending[0].launch.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.pending[0].launch.nofile)
        while self.pending or self.active:
            self._start_due()
            if self.stop_flag.requested:
                self.stop_flag.requested = False
                self._stop_requested()
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
            wait_ms = None if not waits else min(max(0, math.ceil(min(waits) * 1000)), MAX_POLL_MS)
            for fd, _ in self.poller.poll(wait_ms):
                self._on_event(fd)
        return 0

    def _start_due(self) -> None:
        started = []
        while self.pending:
            r = self.pending[0]
            start_at = r.launch.start_at
            if start_at is not None and start_at > time.time():
                if self.active or start_at - time.time() > 0.002:
                    break
                while (left := start_at - time.time()) > 0:  # never before its time
                    time.sleep(left)
            self.pending.pop(0)
            faults.hit("supervisor.start")
            if r.unusable is not None:
                continue  # never started; whoever records the run reads why from its folder
            if not r.files.take_token(r.token, r.dir_fd):
                r.close()
                continue  # another process started (or abandoned) this run
            end = r.lease_end()
            if end is not None and time.time() >= end:
                self._finish(r, r.ended(Outcome.INTERRUPTED, "not started: its lease on the shared store ran out "
                                        "before its slot (this node was fenced)"))
                continue
            for target in r.launch.targets:
                stop_target(target, f"replaced by run {r.launch.run_id}")
            failed = r.start()
            if failed is not None:
                self._finish(r, failed)
                continue
            started.append(r)
            self.active[r.launch.run_id] = r
            for fd, kind in ((r.read_fd, "out"), (r.pidfd, "exit")):
                self.by_fd[fd] = (r, kind)
                self.poller.register(fd, select.POLLIN)
        if started:  # after the starts, so telling never delays one
            self._tell("".join(f"S {r.launch.run_id} {r.started_at!r} {r.proc.pid if r.proc else 0} {r.job_start}\n"
                               for r in started))

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
            if r.unusable is None and r.files.take_token(r.token, r.dir_fd):
                reason = read_stop_reason(r.files) if r.files.has(STOP) else "its supervisor was stopped"
                self._finish(r, r.ended(Outcome.INTERRUPTED, f"{reason} before the slot came"))

    def _finish(self, r: _Run, result: RunResult) -> None:
        for fd in [fd for fd, (owner, _) in self.by_fd.items() if owner is r]:
            self._forget(fd)
        self.active.pop(r.launch.run_id, None)
        # Not fsynced: a result lost to a power cut is recorded as `interrupted`, and skipping
        # two fsyncs per run keeps a burst of short runs from queueing behind the disk.
        try:
            write_at(r.dir_fd, RESULT, result.to_json(), durable=False)
        finally:
            r.close()
        self._tell(f"E {r.launch.run_id}\n")

    def _tell(self, lines: str) -> None:
        if self.notify_fd is not None:
            try:
                os.write(self.notify_fd, lines.encode())
            except OSError:  # a daemon that is busy or gone: it finds the result file later
                pass


def start_failure(e: OSError, program: str, cwd: str) -> tuple[int | None, str]:
    """The exit status a shell would give a job that couldn't be started, and why."""
    if e.filename == cwd and e.filename != program:
        return None, f"can't start {program!r}: its working directory {cwd}: {e.strerror}"
    if isinstance(e, FileNotFoundError):
        return 127, f"command not found: {program!r} (no such file, or not on the job's PATH)"
    if isinstance(e, PermissionError):
        return 126, f"can't run {program!r}: permission denied"
    return None, f"can't start {program!r} in {cwd}: {e.strerror}"


def runner_said(tail: bytes) -> str | None:
    """The last "hermes-cron: ..." line a Hermes job's runner wrote (logic/hermes.py), without
    the prefix: why it skipped, or how Hermes recorded a failure."""
    for line in reversed(tail.decode(errors="replace").splitlines()):
        if line.startswith(RUNNER_SAYS):
            return line.removeprefix(RUNNER_SAYS).strip()[:500]
    return None


def read_stop_reason(files: RunFiles) -> str:
    raw = files.read(STOP)
    if raw is None:
        return "stopped by SIGTERM"
    return raw.decode(errors="replace").strip()[:500] or "stopped on request"
