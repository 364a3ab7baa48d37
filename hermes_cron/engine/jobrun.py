"""One run under a supervisor (engine/supervisor.py), from its start to its result: the job's
process, its capped output, its timeout and kill grace, and what is made ahead of the slot so a
start creates no file."""

from __future__ import annotations

import errno
import os
import resource
import signal
import time
from typing import TYPE_CHECKING

from hermes_cron.contract.files import open_private, write_at
from hermes_cron.contract.procinfo import start_ticks
from hermes_cron.engine import hold
from hermes_cron.engine.launch import Launch
from hermes_cron.engine.stopping import group_alive, killpg
from hermes_cron.errors import HomeError
from hermes_cron.logic.hermes import runner_said
from hermes_cron.logic.run import Outcome, RunResult
from hermes_cron.store.runfiles import JOB_PID, LEASE, OUTPUT, RESULT, TOKEN

if TYPE_CHECKING:
    import subprocess

DRAIN_AFTER_EXIT = 1.0  # how long to wait for output from leftover children once the job exited
LEASE_CHECK = 1.0  # shared store: how often a run's lease file is read
MARKER = b"\n[... hermes-cron: %d bytes omitted ...]\n"


def load_popen() -> None:
    """Load the ordinary start's module (subprocess) ahead of a start that needs it. The daemon
    doesn't load it (0.5 MB of its memory, with the locale module it brings), since most runs
    are held (engine/hold.py) and need none of it; a supervisor loads it before the slot of a
    run that can't be held, or on the start of a run without a slot (a trigger)."""
    import subprocess
    del subprocess  # (loaded is all it takes)


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
        self.proc: subprocess.Popen | hold.Held | None = None
        self.held: hold.Held | None = None  # its process, loaded and held for the slot (hold())
        self.hold_tried = False
        self._hold_w = -1
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
            return
        # Made ahead, while waiting for the slot, so a start creates no file (creating one costs
        # 0.5 ms on some disks): the output (emptied once we hold the token), job.pid (written
        # once the job runs) and the token itself, to be linked into place (take_token()).
        self.pid_fd, self.token_tmp = -1, None
        try:
            self.out_fd = open_private(self.dir_fd, OUTPUT, os.O_WRONLY | os.O_CREAT)
            self.pid_fd = open_private(self.dir_fd, JOB_PID, os.O_WRONLY | os.O_CREAT)
            tmp = f".{TOKEN}.{os.getpid()}"
            fd = open_private(self.dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                os.write(fd, token.encode())
            finally:
                os.close(fd)
            self.token_tmp = tmp
        except (OSError, HomeError):
            pass  # start() does it the slow way, and says why if it still can't

    def hold_request(self) -> hold.Start | None:
        """Before the slot: what it takes to make the job's process and load its program, held
        before its first instruction (engine/hold.py), so the start on the slot only lets it
        go; None where it can't be held (start() then does it all on the slot, as before).
        The answer comes back through held_as()."""
        if self.unusable is not None or self.held is not None or self.out_fd < 0:
            return None
        path = hold.program(self.launch.argv[0], self.env)
        if path is None:
            return None
        self.read_fd, self._hold_w = os.pipe()
        return hold.Start(path, self.launch.argv, self.env, self.cwd, self._hold_w, self.launch.nofile)

    def held_as(self, held: hold.Held | None) -> None:
        os.close(self._hold_w)
        self._hold_w = -1
        self.held = held
        if held is None:
            os.close(self.read_fd)
            self.read_fd = -1

    def take_token(self) -> bool:
        """The start token: linked into place from the copy made ahead (exclusive, like the
        O_EXCL creation other takers use), else created."""
        if self.token_tmp is None:
            return self.files.take_token(self.token, self.dir_fd)
        try:
            os.link(self.token_tmp, TOKEN, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            return True  # (the copy is removed by record_job(), after the burst's starts)
        except FileExistsError:
            self._drop_token_tmp()
            return False

    def write_result(self, data: bytes) -> None:
        """The run's result.json, replaced whole; not fsynced: a result lost to a power cut is
        recorded as `interrupted`, and skipping two fsyncs per run keeps a burst of short runs
        from queueing behind the disk. (Made ahead too, it cost the starts of a 1,000-run burst
        more than it saved: each file made before the slot takes from the lead.)"""
        write_at(self.dir_fd, RESULT, data, durable=False)

    def _drop_token_tmp(self) -> None:
        if self.token_tmp is not None:
            try:
                os.unlink(self.token_tmp, dir_fd=self.dir_fd)
            except OSError:
                pass
            self.token_tmp = None

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
        if self.held is not None:
            held, self.held = self.held, None
            if held.release():
                os.ftruncate(self.out_fd, 0)  # (a run is held only with its output open)
                return self._running(held)
            os.close(self.read_fd)  # killed from outside while held (it never ran): start it anew
            self.read_fd = -1
        try:
            if self.out_fd >= 0:
                os.ftruncate(self.out_fd, 0)
            else:
                self.out_fd = open_private(self.dir_fd, OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except (OSError, HomeError) as e:
            why = "it is a symbolic link" if getattr(e, "errno", None) == errno.ELOOP else str(e)
            return self.ended(Outcome.FAILED, f"not started: can't open {self.files.output}: {why}")
        self.read_fd, write_fd = os.pipe()
        try:
            proc = self._popen(write_fd)
        except OSError as e:
            os.close(write_fd)
            os.close(self.read_fd)
            code, message = start_failure(e, self.launch.argv[0], self.cwd)
            os.write(self.out_fd, (message + "\n").encode())
            os.close(self.out_fd)
            self.out_fd = -1
            return self.ended(Outcome.FAILED, message, code, len(message) + 1)
        os.close(write_fd)
        return self._running(proc)

    def _running(self, proc: subprocess.Popen | hold.Held) -> None:
        self.proc = proc
        self.out = CappedOutput(self.out_fd, self.launch.output_cap)
        self.pipe_open = True
        if self.launch.timeout:
            self.timeout_at = time.monotonic() + self.launch.timeout

    def _popen(self, out: int) -> subprocess.Popen:
        """The ordinary start, with the original limit on open files (the supervisor keeps the
        daemon's raised one): lowered around the spawn, or, with too many descriptors open here
        for that, in the child (a fork instead of a vfork)."""
        import subprocess

        def popen(**extra) -> subprocess.Popen:
            return subprocess.Popen(self.launch.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.cwd,
                                    env=self.env, start_new_session=True, close_fds=True, **extra)

        nofile = self.launch.nofile
        mine = resource.getrlimit(resource.RLIMIT_NOFILE)
        if nofile is None or mine == nofile:
            return popen()
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        try:
            return popen()
        except OSError as e:
            if e.errno != errno.EMFILE:
                raise
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, mine)
        return popen(preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile))

    def record_job(self) -> None:
        """After the starts of a burst: the job's identity (pid and start time) into job.pid, and
        a pidfd to hear of its exit. Not on the way from one start to the next: reading
        /proc/PID/stat of a process still in its exec waits for the exec (~0.4 ms here)."""
        assert self.proc is not None
        self.job_start = start_ticks(self.proc.pid) or 0
        line = f"{self.proc.pid} {self.job_start} {self.started_at!r}\n".encode()
        if self.pid_fd >= 0:
            os.pwrite(self.pid_fd, line, 0)
            os.close(self.pid_fd)
            self.pid_fd = -1
        else:
            self.files.write(JOB_PID, line, self.dir_fd)
        self.pidfd = os.pidfd_open(self.proc.pid)
        self._drop_token_tmp()

    def close(self) -> None:
        if self.held is not None:  # held for a run that is not started here after all
            self.held.cancel()
            self.held = None
            os.close(self.read_fd)
            self.read_fd = -1
        if self.proc is None:  # made ahead for a run that never started here
            for fd in (self.out_fd, self.pid_fd):
                if fd >= 0:
                    os.close(fd)
            self.out_fd = self.pid_fd = -1
            if self.dir_fd >= 0:
                self._drop_token_tmp()
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
        self.out_fd = -1
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


def start_failure(e: OSError, program: str, cwd: str) -> tuple[int | None, str]:
    """The exit status a shell would give a job that couldn't be started, and why."""
    if e.filename == cwd and e.filename != program:
        return None, f"can't start {program!r}: its working directory {cwd}: {e.strerror}"
    if isinstance(e, FileNotFoundError):
        return 127, f"command not found: {program!r} (no such file, or not on the job's PATH)"
    if isinstance(e, PermissionError):
        return 126, f"can't run {program!r}: permission denied"
    return None, f"can't start {program!r} in {cwd}: {e.strerror}"
