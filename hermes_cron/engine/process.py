"""The daemon's process: one per home (the daemon lock), room for a descriptor per run it
watches (the fd limit), and its signals, which only set flags for the loop to act on."""

from __future__ import annotations

import os
import resource
import signal
from dataclasses import dataclass

from hermes_cron.contract.locks import FileLock, holder_pid, read_note
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.errors import AlreadyRunning, LockBusy


def take_daemon_lock(home: Home, lock: FileLock, me: ProcId) -> None:
    """Hold the home's daemon lock for the process's life, or say which daemon holds it."""
    home.ensure()
    try:
        lock.acquire(0)
    except LockBusy:
        note = read_note(home.daemon_lock).split()
        pid = int(note[0]) if note and note[0].isdigit() else None
        if pid is None:
            fd = os.open(home.daemon_lock, os.O_RDONLY | os.O_CLOEXEC)
            try:
                pid = holder_pid(fd)
            finally:
                os.close(fd)
        raise AlreadyRunning(f"a hermes-cron daemon is already running for {home.root} (pid {pid or '?'})",
                             pid) from None
    lock.write_note(f"{me.pid} {me.start}\n")


def raise_fd_limit() -> tuple[int, int]:
    """Room for a pidfd per adopted run; returns the original limit, which jobs get back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return soft, hard


@dataclass
class SignalFlags:
    """The signals received since the loop last looked, set by their handlers."""

    stop: int = 0  # the signal that asked us to stop
    reopen: bool = False  # SIGHUP: reopen the log file
    wake: bool = False  # SIGUSR1: a trigger request or a changed job
    child: bool = False  # SIGCHLD: a supervisor exited

    def install(self) -> int:
        """Set the handlers; returns the descriptor that becomes readable when a signal comes."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, lambda signum, frame: setattr(self, "reopen", True))
        signal.signal(signal.SIGUSR1, lambda signum, frame: setattr(self, "wake", True))
        signal.signal(signal.SIGCHLD, lambda signum, frame: setattr(self, "child", True))
        return wake_r

    def _on_stop(self, signum: int, frame: object) -> None:
        if self.stop:
            raise SystemExit(128 + signum)  # a second stop signal: out at once
        self.stop = signum

    @property
    def any(self) -> bool:
        return bool(self.stop or self.reopen or self.wake or self.child)
