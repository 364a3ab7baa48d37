"""Starting and supervising job processes: the only module that starts processes.

Each run gets a supervisor, forked from the caller (the daemon, or a program calling tick()).
The supervisor leaves the caller's session, claims the run's start token, starts the job in a
session and process group of its own, copies its output into a capped file, enforces the
timeout, and writes the outcome to `result.json` in the run's folder. It never touches the
database: whoever watches the run (the daemon, or any later command) records the result.

So a run's outcome survives the daemon: killing or restarting the daemon leaves supervisors
and jobs running, and their result files waiting to be recorded.

Files in a run's folder (`$HERMES_HOME/cron/runs/JOB/RUNID/`):
- `start`: created exclusively by the one process that starts (or abandons) the run, so a
  run is never started twice, whoever else tries;
- `job.pid`: the job's pid and start time;
- `output.log`: stdout and stderr, capped (head and tail kept, a marker between them);
- `stop`: a request to stop the run, with its reason (the supervisor gets SIGTERM too);
- `result.json`: the outcome, written atomically when the run is over.
"""

from __future__ import annotations

import errno
import gc
import json
import math
import os
import resource
import select
import signal
import subprocess
import time
from dataclasses import dataclass

from hermes_cron import faults
from hermes_cron.errors import HomeError, UnsafeHome
from hermes_cron.contract.files import open_dir, open_private, read_small, write_at
from hermes_cron.logic.jobs import Job
from hermes_cron.contract.procinfo import ProcId, start_ticks

MAX_POLL_MS = 2**31 - 1
DRAIN_AFTER_EXIT = 1.0  # how long to wait for output from leftover children once the job exited
MARKER = b"\n[... hermes-cron: %d bytes omitted ...]\n"


RUN_DEPTH = 4  # cron/runs/JOB/RUNID: the folders of ours on the way to a run's files


@dataclass(frozen=True)
class RunFiles:
    """A run's folder. Every file in it is opened relative to the folder's descriptor without
    following symlinks, and the folder is reached from `cron/` the same way (fsutil.open_dir):
    a symlink anywhere from `cron/` down is refused, never followed."""

    folder: str

    @property
    def token(self) -> str:
        return os.path.join(self.folder, "start")

    @property
    def job_pid(self) -> str:
        return os.path.join(self.folder, "job.pid")

    @property
    def output(self) -> str:
        return os.path.join(self.folder, "output.log")

    @property
    def result(self) -> str:
        return os.path.join(self.folder, "result.json")

    @property
    def stop(self) -> str:
        return os.path.join(self.folder, "stop")

    def open(self, create: bool = False) -> int:
        """The folder's descriptor (made, with the job's folder, if `create`)."""
        return open_dir(self.folder, RUN_DEPTH, create=create)

    def unsafe(self) -> str | None:
        """Why the folder can't be used safely (a symlink, someone else's), or None."""
        try:
            os.close(self.open())
        except UnsafeHome as e:
            return str(e)
        except OSError:
            return None
        return None

    def read(self, name: str) -> bytes | None:
        """The bytes of one of the run's files; None if missing or unsafe."""
        return read_small(os.path.join(self.folder, name), RUN_DEPTH)

    def read_json(self, name: str) -> dict | None:
        raw = self.read(name)
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def read_result(self) -> dict | None:
        return self.read_json("result.json")

    def read_token(self) -> dict | None:
        return self.read_json("start")

    def has(self, name: str) -> bool:
        return self.read(name) is not None

    def read_reaper(self) -> ProcId | None:
        """The supervisor that took the start token, if one did."""
        token = self.read_token() or {}
        try:
            return ProcId(int(token["reaper_pid"]), int(token["reaper_start"]))
        except (KeyError, TypeError, ValueError):
            return None

    def read_job_pid(self) -> ProcId | None:
        raw = self.read("job.pid")
        try:
            pid, ticks = (raw or b"").split()
            return ProcId(int(pid), int(ticks))
        except ValueError:
            return None

    def take_token(self, content: dict | str, dir_fd: int | None = None) -> bool:
        """Create the start token; False if some process already has it."""
        dfd = self.open(create=True) if dir_fd is None else dir_fd
        try:
            fd = open_private(dfd, "start", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return False
        finally:
            if dir_fd is None:
                os.close(dfd)
        try:
            os.write(fd, (content if isinstance(content, str) else json.dumps(content)).encode())
        finally:
            os.close(fd)
        return True

    def write(self, name: str, data: bytes, dir_fd: int | None = None) -> None:
        """Write (replace) a small file of the run, privately, without following a symlink."""
        dfd = self.open() if dir_fd is None else dir_fd
        try:
            fd = open_private(dfd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        finally:
            if dir_fd is None:
                os.close(dfd)


@dataclass(frozen=True)
class Target:
    """An earlier run that a `replace` run stops before it starts."""

    run_id: int
    folder: str
    reaper: ProcId | None
    kill_grace: float

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.folder)


@dataclass(frozen=True)
class Launch:
    """Everything a supervisor needs to start one run: plain data, so it can be sent to a
    supervisor forked in advance (see Spare)."""

    run_id: int
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str | None
    timeout: float | None
    kill_grace: float
    output_cap: int
    scheduled: float | None
    folder: str
    home_root: str
    targets: tuple[Target, ...] = ()
    nofile: tuple[int, int] | None = None
    start_at: float | None = None  # not before this instant (the slot, when claimed ahead of it)

    @classmethod
    def of(cls, run_id: int, job: Job, scheduled: float | None, folder: str, home_root: str,
           targets: tuple[Target, ...] = (), nofile: tuple[int, int] | None = None) -> Launch:
        return cls(run_id, job.name, tuple(job.argv), job.env, job.cwd, job.timeout, job.kill_grace,
                   job.output_cap, scheduled, folder, home_root, targets, nofile, start_at=scheduled)

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.folder)

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["targets"] = [[t.run_id, t.folder, t.reaper.pid if t.reaper else None,
                         t.reaper.start if t.reaper else None, t.kill_grace] for t in self.targets]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Launch:
        d = dict(d)
        d["argv"] = tuple(d["argv"])
        d["env"] = tuple(tuple(kv) for kv in d["env"])
        d["nofile"] = tuple(d["nofile"]) if d["nofile"] else None
        d["targets"] = tuple(Target(r, f, ProcId(p, st) if p is not None else None, g)
                             for r, f, p, st, g in d["targets"])
        return cls(**d)


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

    def finish(self) -> bool:
        """Fix up the file; True if bytes were dropped."""
        if self.total <= self.cap:
            return False
        tail = bytes(self._tail[-self._keep_tail :])
        omitted = self.total - self.head - len(tail)
        os.ftruncate(self.fd, self.head)
        os.pwrite(self.fd, (MARKER % omitted) + tail, self.head)
        return True


def spawn(launches: list[Launch], notify_fd: int | None = None, detach: bool = False) -> int:
    """Fork a supervisor for a batch of runs and return its pid. Doesn't wait for the runs.

    With `detach`, the supervisor is a grandchild that init adopts at once, for callers
    that will never reap it (a program calling tick() from the library).
    """
    if not detach:
        pid = os.fork()
        if pid:
            return pid
        _child(launches, None, notify_fd)
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_fd)
            pid = os.fork()
            if pid == 0:
                _child(launches, None, notify_fd)
            os.write(write_fd, str(pid).encode())
        finally:  # the middle process only passes the pid back, whatever happens
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(middle, 0)
    return int(data) if data else 0


class Spare:
    """A supervisor forked in advance, set up and waiting for its runs: handing it runs costs a
    pipe write instead of a fork, which takes the fork off the path from a due slot to its job.
    If the daemon goes away, the spare reads end-of-file and exits."""

    def __init__(self, notify_fd: int | None = None) -> None:
        read_fd, self._write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            _child(None, read_fd, notify_fd, rehearse=True)
        os.close(read_fd)

    def assign(self, launches: list[Launch]) -> int:
        """Hand the spare its runs; returns its pid. A spare takes one batch only."""
        data = json.dumps([launch.to_dict() for launch in launches]).encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._write_fd, view):]
        finally:
            os.close(self._write_fd)
            self._write_fd = -1
        return self.pid

    def dismiss(self) -> None:
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1


def _child(launches: list[Launch] | None, assignment_fd: int | None, notify_fd: int | None,
           rehearse: bool = False) -> None:
    code = 70
    try:
        stop, wake_r = _prepare(keep={fd for fd in (assignment_fd, notify_fd) if fd is not None})
        if rehearse:
            _rehearse()
        if launches is None:
            assert assignment_fd is not None
            chunks = []
            while chunk := os.read(assignment_fd, 65536):
                chunks.append(chunk)
            os.close(assignment_fd)
            if not chunks:
                os._exit(0)  # dismissed, or the daemon is gone
            launches = [Launch.from_dict(item) for item in json.loads(b"".join(chunks))]
        code = _Supervisor(launches, stop, wake_r, notify_fd).run()
    except BaseException:  # the child must never return into the caller's code, whatever happens
        code = 70
        _report_crash(launches)
    finally:
        os._exit(code)


CRASH_FILE = "crash.txt"


def _report_crash(launches: list[Launch] | None) -> None:
    """A supervisor that crashed leaves its traceback in the folder of each of its runs (whoever
    records them logs it and gives the reason), and on its stderr."""
    import traceback

    text = traceback.format_exc()
    try:
        os.write(2, f"hermes-cron supervisor {os.getpid()} crashed:\n{text}".encode())
    except OSError:
        pass
    for launch in launches or ():
        try:
            launch.files.write(CRASH_FILE, text.encode())
        except (OSError, HomeError):
            pass


def _prepare(keep: set[int]) -> tuple[_StopFlag, int]:
    """Leave the parent's session, signals and descriptors behind. Returns the stop flag that
    SIGTERM sets and the descriptor that wakes the supervisor's poll when it does."""
    gc.disable()
    os.setsid()
    # Shrug these off with a handler, not SIG_IGN: an ignored signal stays ignored across exec,
    # and the job must start with every signal at its default. (SIGPIPE is ignored: a write to
    # a daemon that went away must not kill us; Popen restores it to default for the job.)
    for sig in _SHRUGGED:
        signal.signal(sig, _shrug)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_fd())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    os.chdir("/")
    return stop, wake_r


_SHRUGGED = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def _shrug(signum: int, frame: object) -> None:
    pass


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False

    def set(self, signum: int, frame: object) -> None:
        self.requested = True


def _max_fd() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if 0 < soft < 1 << 20 else 1 << 16


def _rehearse() -> None:
    """Walk the start path once without a run. A forked process pays a page fault and a copy
    for every page it first writes; paying them now, while waiting, keeps them off the path
    from a due slot to its job (about 2 ms of the first start on our machines)."""
    sample = Launch(0, "rehearsal", ("/bin/true",), (("A", "b"),), None, None, 1.0, 1024, 0.0, "/", "/")
    Launch.from_dict(json.loads(json.dumps(sample.to_dict())))
    ProcId.me()
    json.dumps({"run_id": 0, "reaper_pid": 0, "reaper_start": 0})
    env, _ = _job_environment(sample)
    try:
        proc = subprocess.Popen(["/bin/true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True, close_fds=True)
        proc.wait()
    except OSError:
        pass


def _job_environment(launch: Launch) -> tuple[dict[str, str], str]:
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

    def __init__(self, launch: Launch, token: str, env: dict[str, str], cwd: str):
        self.launch = launch
        self.files = launch.files
        self.token = token
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.out: CappedOutput | None = None
        self.out_fd = self.read_fd = self.pidfd = -1
        self.outcome: dict = {"run_id": launch.run_id, "output": self.files.output}
        self.timeout_at: float | None = None
        self.kill_at: float | None = None
        self.drain_until: float | None = None
        self.status: str | None = None
        self.reason: str | None = None
        self.pipe_open = False
        self.dir_fd = -1
        self.unusable: str | None = None  # why the run's folder can't be used: the run isn't started
        try:
            self.dir_fd = self.files.open(create=True)
        except (OSError, HomeError) as e:
            self.unusable = str(e)

    def start(self) -> dict | None:
        """Start the job; returns a finished outcome if it could not be started."""
        self.outcome["started_at"] = time.time()
        try:
            self.out_fd = open_private(self.dir_fd, "output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except (OSError, HomeError) as e:
            why = "it is a symbolic link" if getattr(e, "errno", None) == errno.ELOOP else str(e)
            return {**self.outcome, "status": "failed", "exit_code": None, "signal": None,
                    "reason": f"not started: can't open {self.files.output}: {why}", "ended_at": time.time(),
                    "output_bytes": 0}
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
            code, message = _start_failure(e, self.launch.argv[0], self.cwd)
            os.write(self.out_fd, (message + "\n").encode())
            os.close(self.out_fd)
            return {**self.outcome, "status": "failed", "exit_code": code, "signal": None,
                    "reason": message, "ended_at": time.time(), "output_bytes": len(message) + 1}
        os.close(write_fd)
        self.pipe_open = True
        ticks = start_ticks(self.proc.pid) or 0
        self.files.write("job.pid", f"{self.proc.pid} {ticks}\n".encode(), self.dir_fd)
        self.outcome.update(job_pid=self.proc.pid, job_start=ticks)
        self.pidfd = os.pidfd_open(self.proc.pid)
        if self.launch.timeout:
            self.timeout_at = time.monotonic() + self.launch.timeout
        return None

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def stop(self, status: str, reason: str) -> None:
        if self.proc is None or self.proc.returncode is not None or self.status is not None:
            return
        self.status, self.reason = status, reason
        _killpg(self.proc.pid, signal.SIGTERM)
        self.kill_at = time.monotonic() + self.launch.kill_grace

    def deadlines(self) -> list[float]:
        return [d for d in (self.timeout_at if self.status is None else None, self.kill_at, self.drain_until)
                if d is not None]

    def enforce(self, now: float) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None and self.timeout_at is not None and now >= self.timeout_at:
            self.stop("timed_out", f"ran longer than its timeout of {self.launch.timeout:g} s")
        if self.kill_at is not None and now >= self.kill_at:
            _killpg(self.proc.pid, signal.SIGKILL)
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
        if self.kill_at is not None and not _group_alive(self.proc.pid):
            self.kill_at = None

    def over(self, now: float) -> bool:
        if self.proc is None or self.proc.returncode is None:
            return False
        return not self.pipe_open or (self.drain_until is not None and now >= self.drain_until)

    def result(self) -> dict:
        assert self.proc is not None and self.out is not None
        os.close(self.pidfd)
        os.close(self.read_fd)
        if self.kill_at is not None:  # the job is gone; give what is left of its group the same end
            _killpg(self.proc.pid, signal.SIGKILL)
        returncode = self.proc.returncode
        truncated = self.out.finish()
        os.close(self.out_fd)
        status = self.status or ("succeeded" if returncode == 0 else "failed")
        reason = self.reason
        if reason is None and returncode == 127 and self.launch.argv[:2] == ("/bin/sh", "-c"):
            reason = "command not found (the shell exited 127)"
        return {**self.outcome, "status": status, "exit_code": returncode if returncode >= 0 else None,
                "signal": -returncode if returncode < 0 else None, "reason": reason,
                "ended_at": time.time(), "output_bytes": self.out.total, "output_truncated": truncated,
                "leftover_processes": _group_alive(self.proc.pid)}


class _Supervisor:
    """Starts a batch of runs, each at its slot, and watches them to their ends."""

    def __init__(self, launches: list[Launch], stop: _StopFlag, wake_r: int, notify_fd: int | None):
        self.stop_flag = stop
        self.wake_r = wake_r
        self.notify_fd = notify_fd
        self.me = ProcId.me()
        self.pending: list[_Run] = []
        for launch in sorted(launches, key=lambda x: x.start_at or 0.0):
            env, cwd = _job_environment(launch)
            token = json.dumps({"run_id": launch.run_id, "reaper_pid": self.me.pid, "reaper_start": self.me.start})
            self.pending.append(_Run(launch, token, env, cwd))
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
                r.enforce(now)
                if r.over(now):
                    self._finish(r, r.result())
            if not self.pending and not self.active:
                break
            waits = [d - now + 0.001 for r in self.active.values() for d in r.deadlines()]
            if self.pending:  # wake just before the slot; _start_due sleeps the last stretch exactly
                waits.append((self.pending[0].launch.start_at or 0.0) - time.time() - 0.0015)
            # poll() takes at most 2**31-1 ms (24.8 days): a longer timeout is waited in steps
            wait_ms = None if not waits else min(max(0, math.ceil(min(waits) * 1000)), MAX_POLL_MS)
            for fd, _ in self.poller.poll(wait_ms):
                self._on_event(fd)
        return 0

    def _start_due(self) -> None:
        while self.pending:
            r = self.pending[0]
            start_at = r.launch.start_at
            if start_at is not None and start_at > time.time():
                if self.active or start_at - time.time() > 0.002:
                    return
                while (left := start_at - time.time()) > 0:  # never before its time
                    time.sleep(left)
            self.pending.pop(0)
            faults.hit("supervisor.start")
            if r.unusable is not None:
                continue  # never started; whoever records the run reads why from its folder
            if not r.files.take_token(r.token, r.dir_fd):
                r.close()
                continue  # another process started (or abandoned) this run
            for target in r.launch.targets:
                _stop_target(target, f"replaced by run {r.launch.run_id}")
            failed = r.start()
            if failed is not None:
                self._finish(r, failed)
                continue
            self.active[r.launch.run_id] = r
            for fd, kind in ((r.read_fd, "out"), (r.pidfd, "exit")):
                self.by_fd[fd] = (r, kind)
                self.poller.register(fd, select.POLLIN)

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
        asked = [r for r in self.active.values() if r.files.has("stop")]
        waiting = [r for r in self.pending if r.files.has("stop")]
        if not asked and not waiting:
            asked, waiting = list(self.active.values()), list(self.pending)
        for r in asked:
            r.stop("interrupted", _read_stop_reason(r.files))
        for r in waiting:
            self.pending.remove(r)
            if r.unusable is None and r.files.take_token(r.token, r.dir_fd):
                reason = _read_stop_reason(r.files) if r.files.has("stop") else "its supervisor was stopped"
                self._finish(r, {**r.outcome, "status": "interrupted", "exit_code": None, "signal": None,
                                 "reason": f"{reason} before the slot came", "ended_at": time.time(),
                                 "output_bytes": 0})

    def _finish(self, r: _Run, outcome: dict) -> None:
        for fd in [fd for fd, (owner, _) in self.by_fd.items() if owner is r]:
            self._forget(fd)
        self.active.pop(r.launch.run_id, None)
        # Not fsynced: a result lost to a power cut is recorded as `interrupted`, and skipping
        # two fsyncs per run keeps a burst of short runs from queueing behind the disk.
        try:
            write_at(r.dir_fd, "result.json", json.dumps(outcome).encode(), durable=False)
        finally:
            r.close()
        if self.notify_fd is not None:
            try:
                os.write(self.notify_fd, f"{r.launch.run_id}\n".encode())
            except OSError:  # a daemon that is busy or gone: it finds the result file later
                pass


def _start_failure(e: OSError, program: str, cwd: str) -> tuple[int | None, str]:
    """The exit status a shell would give a job that couldn't be started, and why."""
    if e.filename == cwd and e.filename != program:
        return None, f"can't start {program!r}: its working directory {cwd}: {e.strerror}"
    if isinstance(e, FileNotFoundError):
        return 127, f"command not found: {program!r} (no such file, or not on the job's PATH)"
    if isinstance(e, PermissionError):
        return 126, f"can't run {program!r}: permission denied"
    return None, f"can't start {program!r} in {cwd}: {e.strerror}"


def _read_stop_reason(files: RunFiles) -> str:
    raw = files.read("stop")
    if raw is None:
        return "stopped by SIGTERM"
    return raw.decode(errors="replace").strip()[:500] or "stopped on request"


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def request_stop(files: RunFiles, reaper: ProcId | None, job: ProcId | None, reason: str) -> bool:
    """Ask a run to stop: write the reason, then TERM its supervisor (or, without one, its job's
    process group). Returns False if there was nothing alive to signal."""
    try:
        files.write("stop", (reason + "\n").encode())
    except (OSError, HomeError):
        pass
    if reaper is not None and reaper.alive():
        os.kill(reaper.pid, signal.SIGTERM)
        return True
    if job is not None and job.alive():
        _killpg(job.pid, signal.SIGTERM)
        return True
    return False


def _stop_target(target: Target, reason: str) -> None:
    """Stop an earlier run and wait until it is gone (bounded by its kill grace)."""
    job = target.files.read_job_pid()
    if not request_stop(target.files, target.reaper, job, reason):
        return
    deadline = time.monotonic() + target.kill_grace + 5.0
    escalated = False
    while time.monotonic() < deadline:
        job_alive = job is not None and job.alive()
        reaper_busy = target.reaper is not None and target.reaper.alive() and \
            not target.files.has("result.json")
        if not reaper_busy and not job_alive:
            return
        if not reaper_busy and job_alive and not escalated and time.monotonic() > deadline - 5.0:
            _killpg(job.pid, signal.SIGKILL)  # no supervisor left to escalate for us
            escalated = True
        time.sleep(0.02)
