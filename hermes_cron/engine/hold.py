"""Holding a job at the door of its slot: its process is made and its program loaded before the
slot, then held under ptrace before the program's first instruction, and let go on the slot.
What is left at the slot is waking a process (~0.1 ms here) instead of a fork and an exec
(~1 ms); the job still runs not one instruction of its own before its slot.

A held process is the supervisor's child, traced by it:
- fork; the child resets every signal to its default, leaves the session, sets up its
  descriptors, working directory and limits, asks to be traced and stops itself (SIGSTOP);
- the supervisor sets PTRACE_O_EXITKILL (a held job dies with its supervisor: it never runs
  early or unwatched) and lets it go on to exec, which stops it again (SIGTRAP), loaded and held;
- on the slot PTRACE_DETACH, the SIGTRAP dropped: the program runs, untraced from then on.
If the supervisor dies before EXITKILL is set, the child (stopped, with default signals, alone in
an orphaned process group) is sent SIGHUP by the kernel and dies, or never gets past the
parent check before its exec; it never runs the job.

Not held (started on the slot the ordinary way, engine/jobrun.py): a program that is setuid,
setgid or has file capabilities (a traced exec drops them), one that can't be found or loaded
(the ordinary start reports why, on the slot), and every job where ptrace is refused (a seccomp
filter, Yama's ptrace_scope 2 without CAP_SYS_PTRACE, or 3): the first refusal turns holding off
for the process.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
from typing import NamedTuple

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_EXITKILL = 0x100000
REFUSED = 125  # the child's exit status when it could not be traced or set up

_ptrace_fn = None
_usable = True


def _load() -> bool:
    """libc's ptrace through ctypes, loaded on first use: the daemon itself never traces
    (ctypes costs 0.2 MB and 3 ms). False where it can't be had."""
    global _ptrace_fn, _usable
    if _ptrace_fn is None and _usable:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.ptrace
            fn.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
            fn.restype = ctypes.c_long
            _ptrace_fn = (fn, ctypes.get_errno)
        except (ImportError, OSError, AttributeError):
            _usable = False
    return _ptrace_fn is not None


def _ptrace(request: int, pid: int, data: int = 0) -> None:
    assert _ptrace_fn is not None
    fn, get_errno = _ptrace_fn
    if fn(request, pid, None, data or None) == -1:
        code = get_errno()
        raise OSError(code, os.strerror(code))


def program(argv0: str, env: dict[str, str]) -> str | None:
    """The file the job's exec will run (looked up on the job's PATH, as an ordinary start
    does), if it may be held; None if not (not found, not a regular file, privileged)."""
    dirs = [""] if "/" in argv0 else os.get_exec_path(env)
    for d in dirs:
        path = os.path.join(d, argv0) if d else argv0
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not os.access(path, os.X_OK):
            continue
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            return None
        try:
            os.getxattr(path, "security.capability")
            return None  # file capabilities: a traced exec would run it without them
        except OSError:
            pass
        return path
    return None


class Held:
    """A job's process, loaded and held before its first instruction. Like a Popen for the
    rest of its life: `pid`, `returncode`, `wait()`."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def release(self) -> bool:
        """Let the job run (its slot has come). False if the held process was gone (killed
        from outside): it has been reaped and the job never ran."""
        try:
            _ptrace(PTRACE_DETACH, self.pid)
            return True
        except OSError:
            self.cancel()
            return False

    def cancel(self) -> None:
        """The run is not started here after all: kill the held process (it never ran)."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()

    def wait(self) -> int:
        if self.returncode is None:
            _, status = _waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


class Start(NamedTuple):
    """What a held start needs: the program (engine/hold.py's program()), the job's argv,
    environment and working directory, the descriptor for its output and its file limit."""

    path: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    out_fd: int
    nofile: tuple[int, int] | None


def hold_all(starts: list[Start]) -> list[Held | None]:
    """Make the jobs' processes and load their programs, held; None for each that can't be
    held (the ordinary start on its slot then does it, and reports any fault). The steps of
    the several processes overlap: all are forked, then all set to go on to their exec, then
    all found loaded, so no round trip waits on another (a burst on a busy machine)."""
    if not _load():
        return [None] * len(starts)
    parent = os.getpid()
    forked: list[tuple[int, int] | None] = []
    results: list[Held | None] = []
    try:
        for start in starts:
            forked.append(_fork(start, parent) if _usable else None)
        going = [_let_exec(f) if f is not None else False for f in forked]
        for f, ok in zip(forked, going):
            results.append(_loaded(f) if f is not None and ok else None)
        return results
    except BaseException:
        for f in forked[len(results):]:
            if f is not None:
                _kill_and_reap(f[0])
        for held in results:
            if held is not None:
                held.cancel()
        raise
    finally:
        for f in forked:
            if f is not None:
                os.close(f[1])


def _fork(start: Start, parent: int) -> tuple[int, int] | None:
    try:
        err_r, err_w = os.pipe()  # close-on-exec: end of file with nothing read means the exec was done
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:  # (out of processes or memory: started on the slot, which says so if it fails)
        os.close(err_r)
        os.close(err_w)
        return None
    if pid == 0:
        _child(start, err_w, parent)
    os.close(err_w)
    return pid, err_r


def _let_exec(forked: tuple[int, int]) -> bool:
    """The child has stopped itself, traced: make it die with us, and let it go on to its exec."""
    global _usable
    pid, err_r = forked
    _, status = _waitpid(pid, os.WUNTRACED)
    if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP):
        if os.read(err_r, 64) == b"ptrace" or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS):
            _usable = False  # ptrace refused (or a seccomp filter killed the asking): don't ask again
        return False  # it exited (reaped): it could not be set up or traced
    try:
        _ptrace(PTRACE_SETOPTIONS, pid, PTRACE_O_EXITKILL)
        _ptrace(PTRACE_CONT, pid)
    except OSError:
        _usable = False
        _kill_and_reap(pid)
        return False
    return True


def _loaded(forked: tuple[int, int]) -> Held | None:
    pid, err_r = forked
    _, status = _waitpid(pid, 0)
    if os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP and os.read(err_r, 64) == b"":
        return Held(pid)  # loaded, and stopped before its first instruction
    if os.WIFSTOPPED(status):
        _kill_and_reap(pid)
    return None  # the exec failed (it exited): the start on the slot says why


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        _waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass


def _waitpid(pid: int, options: int) -> tuple[int, int]:
    while True:
        try:
            return os.waitpid(pid, options)
        except InterruptedError:
            continue


def _child(start: Start, err_w: int, parent: int) -> None:
    """In the forked child: never returns. Only system calls from here to the exec."""
    path, argv, env, cwd, out_fd, nofile = start
    try:
        signal.set_wakeup_fd(-1)
        for sig in signal.valid_signals():
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(sig, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.chdir(cwd)
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        os.closerange(3, err_w)
        os.closerange(err_w + 1, 1 << 20)
        try:
            _ptrace(PTRACE_TRACEME, 0)
        except OSError:
            os.write(err_w, b"ptrace")
            os._exit(REFUSED)
        if os.getppid() != parent:
            os._exit(REFUSED)
        os.kill(os.getpid(), signal.SIGSTOP)  # the supervisor sets EXITKILL, then lets us go on
        if os.getppid() != parent:
            os._exit(REFUSED)
        os.execve(path, list(argv), env)
    except OSError as e:
        try:
            os.write(err_w, f"exec {e.errno or errno.EIO}".encode())
        except OSError:
            pass
    finally:
        os._exit(REFUSED)
