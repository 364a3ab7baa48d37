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

import gc
import json
import os
import resource
import select
import signal
import subprocess
import time
from dataclasses import dataclass

from .fsutil import atomic_write
from .jobs import Job
from .procinfo import ProcId, start_ticks

DRAIN_AFTER_EXIT = 1.0  # how long to wait for output from leftover children once the job exited
MARKER = b"\n[... hermes-cron: %d bytes omitted ...]\n"


@dataclass(frozen=True)
class RunFiles:
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

    def read_json(self, path: str) -> dict | None:
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def read_result(self) -> dict | None:
        return self.read_json(self.result)

    def read_token(self) -> dict | None:
        return self.read_json(self.token)

    def read_job_pid(self) -> ProcId | None:
        try:
            with open(self.job_pid) as f:
                pid, ticks = f.read().split()
            return ProcId(int(pid), int(ticks))
        except (OSError, ValueError):
            return None

    def take_token(self, content: dict | str) -> bool:
        """Create the start token; False if some process already has it."""
        try:
            os.mkdir(self.folder, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
        try:
            fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return False
        try:
            os.write(fd, (content if isinstance(content, str) else json.dumps(content)).encode())
        finally:
            os.close(fd)
        return True


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

    def encode(self) -> bytes:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["targets"] = [[t.run_id, t.folder, t.reaper.pid if t.reaper else None,
                         t.reaper.start if t.reaper else None, t.kill_grace] for t in self.targets]
        return json.dumps(d).encode()

    @classmethod
    def decode(cls, data: bytes) -> Launch:
        d = json.loads(data)
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


def spawn(launch: Launch, detach: bool = False) -> int:
    """Fork the supervisor of one run and return its pid. Doesn't wait for the run.

    With `detach`, the supervisor is a grandchild that init adopts at once, for callers
    that will never reap it (a program calling tick() from the library).
    """
    if not detach:
        pid = os.fork()
        if pid:
            return pid
        _child(launch, None)
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_fd)
            pid = os.fork()
            if pid == 0:
                _child(launch, None)
            os.write(write_fd, str(pid).encode())
        finally:  # the middle process only passes the pid back, whatever happens
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(middle, 0)
    return int(data) if data else 0


class Spare:
    """A supervisor forked in advance, set up and waiting for its run: handing it a run costs a
    pipe write instead of a fork, which takes the fork off the path from a due slot to its job.
    If the daemon goes away, the spare reads end-of-file and exits."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            _child(None, read_fd, rehearse=True)
        os.close(read_fd)

    def assign(self, launch: Launch) -> int:
        """Hand the spare its run; returns its pid. A spare takes one run only."""
        data = launch.encode()
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


def _child(launch: Launch | None, assignment_fd: int | None, rehearse: bool = False) -> None:
    code = 70
    try:
        stop, wake_r = _prepare(keep=assignment_fd)
        if rehearse:
            _rehearse()
        if launch is None:
            assert assignment_fd is not None
            chunks = []
            while chunk := os.read(assignment_fd, 65536):
                chunks.append(chunk)
            os.close(assignment_fd)
            if not chunks:
                os._exit(0)  # dismissed, or the daemon is gone
            launch = Launch.decode(b"".join(chunks))
        code = _supervise(launch, stop, wake_r)
    except BaseException:  # the child must never return into the caller's code, whatever happens
        code = 70
    finally:
        os._exit(code)


def _prepare(keep: int | None) -> tuple[_StopFlag, int]:
    """Leave the parent's session, signals and descriptors behind. Returns the stop flag that
    SIGTERM sets and the descriptor that wakes the supervisor's poll when it does."""
    gc.disable()
    os.setsid()
    # Shrug these off with a handler, not SIG_IGN: an ignored signal stays ignored across exec,
    # and the job must start with every signal at its default.
    for sig in _SHRUGGED:
        signal.signal(sig, _shrug)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if keep is None:
        os.closerange(3, _max_fd())
    else:
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())
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


def _rehearse() -> None:
    """Walk the start path once without a run. A forked process pays a page fault and a copy
    for every page it first writes; paying them now, while waiting, keeps them off the path
    from a due slot to its job (about 2 ms of the first start on our machines)."""
    sample = Launch(0, "rehearsal", ("/bin/true",), (("A", "b"),), None, None, 1.0, 1024, 0.0, "/", "/")
    Launch.decode(sample.encode())
    ProcId.me()
    json.dumps({"run_id": 0, "reaper_pid": 0, "reaper_start": 0})
    env = dict(os.environ)
    env.update(sample.env)
    try:
        proc = subprocess.Popen(["/bin/true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True, close_fds=True)
        proc.wait()
    except OSError:
        pass


def _supervise(launch: Launch, stop: _StopFlag, wake_r: int) -> int:
    if launch.nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, launch.nofile)
    me = ProcId.me()
    files = launch.files
    env, cwd = _job_environment(launch)
    os.makedirs(files.folder, mode=0o700, exist_ok=True)
    token = json.dumps({"run_id": launch.run_id, "reaper_pid": me.pid, "reaper_start": me.start})
    if launch.start_at is not None:
        while (left := launch.start_at - time.time()) > 0:  # never before its time
            time.sleep(left)
    if not files.take_token(token):
        return 0
    for target in launch.targets:
        _stop_target(target, f"replaced by run {launch.run_id}")
    outcome = _run_job(launch, env, cwd, stop, wake_r)
    atomic_write(files.result, json.dumps(outcome).encode())
    return 0


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False

    def set(self, signum: int, frame: object) -> None:
        self.requested = True


def _max_fd() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if 0 < soft < 1 << 20 else 1 << 16


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


def _run_job(launch: Launch, env: dict[str, str], cwd: str, stop: _StopFlag, wake_r: int) -> dict:
    files, run_id = launch.files, launch.run_id
    out_fd = os.open(files.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    out = CappedOutput(out_fd, launch.output_cap)
    read_fd, write_fd = os.pipe()
    started_at = time.time()
    outcome: dict = {"run_id": run_id, "started_at": started_at, "output": files.output}
    try:
        proc = subprocess.Popen(
            launch.argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, cwd=cwd, env=env,
            start_new_session=True, close_fds=True,
        )
    except OSError as e:
        os.close(write_fd)
        os.close(read_fd)
        message = f"can't start {launch.argv[0]!r} in {cwd}: {e.strerror}"
        os.write(out_fd, (message + "\n").encode())
        os.close(out_fd)
        return {**outcome, "status": "failed", "exit_code": None, "signal": None, "reason": message,
                "ended_at": time.time(), "output_bytes": len(message) + 1}
    os.close(write_fd)
    ticks = start_ticks(proc.pid) or 0
    with open(files.job_pid, "w") as f:
        f.write(f"{proc.pid} {ticks}\n")
    outcome.update(job_pid=proc.pid, job_start=ticks)
    status, reason = _watch(proc, launch, out, read_fd, stop, wake_r, files)
    returncode = proc.returncode
    truncated = out.finish()
    os.close(out_fd)
    ended_at = time.time()
    exit_code = returncode if returncode >= 0 else None
    sig = -returncode if returncode < 0 else None
    if status is None:
        status = "succeeded" if returncode == 0 else "failed"
    return {**outcome, "status": status, "exit_code": exit_code, "signal": sig, "reason": reason,
            "ended_at": ended_at, "output_bytes": out.total, "output_truncated": truncated}


def _watch(
    proc: subprocess.Popen, job: Launch, out: CappedOutput, read_fd: int, stop: _StopFlag, wake_r: int,
    files: RunFiles,
) -> tuple[str | None, str | None]:
    """Copy output and wait for the job, enforcing timeout and stop requests.

    Returns (status override, reason): (None, None) when the job ended on its own.
    """
    pidfd = os.pidfd_open(proc.pid)
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    start = time.monotonic()
    timeout_at = start + job.timeout if job.timeout else None
    kill_at: float | None = None
    drain_until: float | None = None
    status: str | None = None
    reason: str | None = None
    pipe_open = True
    while pipe_open or proc.returncode is None:
        now = time.monotonic()
        if proc.returncode is None and status is None:
            if stop.requested:
                status, reason = "interrupted", _read_stop_reason(files)
            elif timeout_at is not None and now >= timeout_at:
                status, reason = "timed_out", f"ran longer than its timeout of {job.timeout:g} s"
            if status is not None:
                _killpg(proc.pid, signal.SIGTERM)
                kill_at = now + job.kill_grace
        if kill_at is not None and now >= kill_at:
            _killpg(proc.pid, signal.SIGKILL)
            kill_at = None
        if proc.returncode is not None and drain_until is not None and now >= drain_until:
            break
        deadlines = [d for d in (timeout_at if status is None else None, kill_at, drain_until) if d is not None]
        wait_ms = None if not deadlines else max(0, int((min(deadlines) - now) * 1000) + 1)
        for fd, _ in poller.poll(wait_ms):
            if fd == read_fd:
                data = os.read(read_fd, 65536)
                if data:
                    out.write(data)
                else:
                    poller.unregister(read_fd)
                    pipe_open = False
            elif fd == pidfd:
                poller.unregister(pidfd)
                proc.wait()
                drain_until = time.monotonic() + DRAIN_AFTER_EXIT
                if kill_at is not None and not _group_alive(proc.pid):
                    kill_at = None
            elif fd == wake_r:
                os.read(wake_r, 512)
    os.close(pidfd)
    os.close(read_fd)
    if kill_at is not None:  # the job is gone; give what is left of its group the same end
        _killpg(proc.pid, signal.SIGKILL)
    return status, reason


def _read_stop_reason(files: RunFiles) -> str:
    try:
        with open(files.stop) as f:
            return f.read().strip() or "stopped on request"
    except OSError:
        return "stopped by SIGTERM"


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
        with open(files.stop, "w") as f:
            f.write(reason + "\n")
    except OSError:
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
        reaper_alive = target.reaper is not None and target.reaper.alive()
        job_alive = job is not None and job.alive()
        if not reaper_alive and not job_alive:
            return
        if not reaper_alive and job_alive and not escalated and time.monotonic() > deadline - 5.0:
            _killpg(job.pid, signal.SIGKILL)  # no supervisor left to escalate for us
            escalated = True
        time.sleep(0.02)
