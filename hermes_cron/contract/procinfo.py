"""Process identity on Linux, read from /proc: a pid plus its start time names one process,
so a pid that the kernel reused for another program is never mistaken for ours."""

from __future__ import annotations

import os
import time
from collections import namedtuple

CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcId(namedtuple("ProcId", "pid start")):
    """One process, for good: its pid and its start time (clock ticks since boot, field 22 of
    /proc/PID/stat), which a reused pid doesn't share. (A named tuple, like the contract's
    records: contract/heartbeat.py says why.)"""

    __slots__ = ()

    @classmethod
    def of(cls, pid: int) -> ProcId | None:
        ticks = start_ticks(pid)
        return cls(pid, ticks) if ticks is not None else None

    @classmethod
    def me(cls) -> ProcId:
        me = cls.of(os.getpid())
        assert me is not None
        return me

    def alive(self) -> bool:
        """True while this very process exists and is not a zombie."""
        stat = _stat_fields(self.pid)
        return stat is not None and int(stat[19]) == self.start and stat[0] != "Z"

    def started_at(self) -> float:
        return boot_time() + self.start / CLK_TCK

    def signal(self, sig: int) -> bool:
        """Send `sig` if this very process is still alive (checked right before: a pid the kernel
        reused for another program is never hit)."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def terminate(self, timeout: float) -> tuple[bool, bool]:
        """SIGTERM (and SIGCONT, in case it is stopped), wait up to `timeout`, then SIGKILL.
        Returns (gone, had to kill)."""
        import signal  # (here: `status` reads processes, and signal's enums cost its start)

        self.signal(signal.SIGTERM)
        self.signal(signal.SIGCONT)
        if self.wait_gone(timeout):
            return True, False
        self.signal(signal.SIGKILL)
        return self.wait_gone(10.0), True


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]] if raw else []


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def host_name() -> str:
    """This host's name, as socket.gethostname() gives it (both are the kernel's nodename),
    without loading the socket module: 0.5 MB of the daemon's memory."""
    return os.uname().nodename


def boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0
