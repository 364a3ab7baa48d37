"""`hermes-cron.pid`: the pid alone on the first line (what `kill $(head -1 FILE)` and systemd's
PIDFile= read), then one JSON line with pid, pid_start, boot_id, argv, home, started_at.
"""

from __future__ import annotations

import os
from collections import namedtuple
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any

from hermes_cron.contract.files import atomic_write, read_small
from hermes_cron.contract.command import daemon_command
from hermes_cron.contract.procinfo import ProcId, boot_id, cmdline
from hermes_cron.logic.jsondata import json_object


class PidInfo(namedtuple("PidInfo", "pid pid_start boot_id argv home started_at")):
    """The pidfile: pid (int), pid_start (clock ticks, or None), boot_id, argv (list of str),
    home and started_at, each None when an older pidfile lacks it. (A named tuple, like the
    contract's records: contract/heartbeat.py says why.)"""

    __slots__ = ()

    @property
    def proc(self) -> ProcId | None:
        return ProcId(self.pid, self.pid_start) if self.pid_start is not None else None


def write_pidfile(path: str, me: ProcId, argv: list[str], home: str, started_at: float) -> None:
    import json  # (here: `status` reads pidfiles, and json costs its start; json_lite reads them)

    details = {"pid": me.pid, "pid_start": me.start, "boot_id": boot_id(), "argv": argv,
               "home": home, "started_at": started_at}
    atomic_write(path, f"{me.pid}\n{json.dumps(details)}\n".encode())


def read_pidfile(path: str, owner: int | None = None) -> PidInfo | None:
    """The pidfile's content; None if missing. A bare-pid file (no JSON line) reads with no
    start time, which is never enough to signal it."""
    raw = read_small(path, owner=owner)
    if raw is None:
        return None
    lines = raw.decode(errors="replace").splitlines()
    if not lines or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0].strip())
    details: dict[str, Any] = (json_object(lines[1]) if len(lines) > 1 else None) or {}
    argv = details.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        argv = []
    start = details.get("pid_start")
    if not isinstance(start, int) or isinstance(start, bool):
        start = None
    return PidInfo(pid, start, details.get("boot_id"), argv, details.get("home"), details.get("started_at"))


def remove_pidfile(path: str, me: ProcId) -> None:
    """Remove the pidfile if it still names `me`."""
    info = read_pidfile(path)
    if info is not None and info.pid == me.pid and info.pid_start == me.start:
        try:
            os.unlink(path)
        except OSError:
            pass


def verify(info: PidInfo | None) -> ProcId | None:
    """The daemon's identity if the pidfile names a live hermes-cron daemon of this boot: same
    pid, same start time, and the very command line the daemon recorded, compared whole, which
    must be a daemon's. Otherwise None."""
    if info is None or info.proc is None or not info.argv:
        return None
    if info.boot_id is not None and info.boot_id != boot_id():
        return None
    proc = info.proc
    if not proc.alive() or not daemon_command(info.argv) or cmdline(proc.pid) != info.argv:
        return None
    return proc
