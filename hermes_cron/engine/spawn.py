"""Forking supervisors (a job's own process is made by engine/jobrun.py or engine/hold.py).
`spawn` forks one for a batch of runs; `Spare` forks one in advance, set up and waiting, so
handing runs over costs a pipe write instead of a fork.
A supervisor leaves the caller's session, signals and descriptors behind, then runs
engine/supervisor.py's loop. Whatever happens in it, the child never returns into the caller's
code; a crash leaves its traceback in each of its runs' folders (and on its stderr), where
whoever records the runs finds it.

So a run's outcome survives the daemon: killing or restarting the daemon leaves supervisors
and jobs running, and their result files waiting to be recorded.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal

from hermes_cron.engine.launch import Launch
from hermes_cron.engine.supervisor import StopFlag, Supervisor
from hermes_cron.errors import HomeError
from hermes_cron.store.runfiles import CRASH

def spawn(launches: list[Launch], notify_fd: int | None = None, detach: bool = False) -> int:
    """Fork a supervisor for a batch of runs and return its pid. Doesn't wait for the runs.

    With `detach`, the supervisor is a grandchild that init adopts at once, for callers
    that will never reap it (a program calling tick() from the library, a `trigger` with no
    daemon), and its standard streams are /dev/null: it must not hold the caller's terminal or
    pipes open (`hermes-cron trigger job | cat` returns at once). A crash still leaves its
    traceback in its runs' folders.
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
                _detach_streams()
                _child(launches, None, notify_fd)
            os.write(write_fd, str(pid).encode())
        finally:  # the middle process only passes the pid back, whatever happens
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(middle, 0)
    return int(data) if data else 0


def _detach_streams() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


class Spare:
    """A supervisor forked in advance (when the daemon is idle without one and a slot is near:
    logic/wake.py's spare_wanted), set up and waiting for its runs: handing it runs costs a pipe
    write instead of a fork. If the daemon goes away or dismisses it, the spare reads
    end-of-file and exits."""

    def __init__(self, notify_fd: int | None = None) -> None:
        read_fd, self._write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            _child(None, read_fd, notify_fd)
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


def _child(launches: list[Launch] | None, assignment_fd: int | None, notify_fd: int | None) -> None:
    code = 70
    try:
        stop, wake_r = _prepare(keep={fd for fd in (assignment_fd, notify_fd) if fd is not None})
        if launches is None:
            assert assignment_fd is not None
            chunks = []
            while chunk := os.read(assignment_fd, 65536):
                chunks.append(chunk)
            os.close(assignment_fd)
            if not chunks:
                os._exit(0)  # dismissed, or the daemon is gone
            launches = [Launch.from_dict(item) for item in json.loads(b"".join(chunks))]
        code = Supervisor(launches, stop, wake_r, notify_fd).run()
    except BaseException:  # the child must never return into the caller's code, whatever happens
        code = 70
        _report_crash(launches)
    finally:
        os._exit(code)


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
            launch.files.write(CRASH, text.encode())
        except (OSError, HomeError):
            pass


def _prepare(keep: set[int]) -> tuple[StopFlag, int]:
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
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop.set)
    os.chdir("/")
    return stop, wake_r


_SHRUGGED = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def _shrug(signum: int, frame: object) -> None:
    pass


def _max_fd() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if 0 < soft < 1 << 20 else 1 << 16
