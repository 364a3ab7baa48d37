"""The engine's one boundary to the operating system for processes: forking supervisors,
reaping them, asking whether a process lives, watching one through a pidfd, signalling a job's
process group, and the wall clock. The dispatcher and the daemon call only this, so the quick
tests put a fake in its place (tests/fakes.py) and drive a whole run's life without a process.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.engine import spawn
from hermes_cron.engine.launch import Launch


class SpareSupervisor(Protocol):
    pid: int

    def assign(self, launches: list[Launch]) -> int: ...
    def dismiss(self) -> None: ...


class System:
    """The real operating system."""

    def time(self) -> float:
        return time.time()

    def spawn(self, launches: list[Launch], notify_fd: int | None, detach: bool) -> int:
        return spawn.spawn(launches, notify_fd, detach)

    def spare(self, notify_fd: int | None) -> SpareSupervisor:
        return spawn.Spare(notify_fd)

    def reap(self) -> int | None:
        """A child that exited (its pid), 0 if none has yet, None if there are no children."""
        try:
            return os.waitpid(-1, os.WNOHANG)[0]
        except ChildProcessError:
            return None

    def wait_child(self, pid: int = -1) -> int | None:
        """Block until a child (`pid`, or any) exits; its pid, or None if there is none."""
        try:
            return os.waitpid(pid, 0)[0]
        except ChildProcessError:
            return None

    def proc(self, pid: int) -> ProcId | None:
        """The identity (pid and start time) of a live process."""
        return ProcId.of(pid)

    def alive(self, proc: ProcId | None) -> bool:
        return proc is not None and proc.alive()

    def started_at(self, proc: ProcId) -> float:
        return proc.started_at()

    def pidfd(self, pid: int) -> int | None:
        """A descriptor that becomes readable when `pid` exits; None if it can't be had."""
        try:
            return os.pidfd_open(pid)
        except OSError:
            return None

    def close(self, fd: int) -> None:
        os.close(fd)

    def killpg(self, pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


SYSTEM = System()
