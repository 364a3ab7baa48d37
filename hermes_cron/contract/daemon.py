"""The files other programs read: the heartbeat and the pidfile. The watchdog needs only this.

`.ticker_heartbeat` (JSON) is written atomically by the tick loop at start and every N ticks:
  time, pid, pid_start, boot_id, ticks, tick_interval, heartbeat_every, interval_s (the time
  between two heartbeats, so a reader can judge staleness with no other configuration),
  last_ok_tick, last_error {time, kind, message}, consecutive_failures, running, next_due,
  started_at, home, version.

`hermes-cron.pid`: the pid alone on the first line (what `kill $(head -1 FILE)` and systemd's
PIDFile= read), then one JSON line with pid, pid_start, boot_id, argv, home, started_at.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from hermes_cron.contract.files import atomic_write, read_small
from hermes_cron.contract.command import daemon_command
from hermes_cron.contract.procinfo import ProcId, boot_id, cmdline

HEARTBEAT_VERSION = 1
STALE_FACTOR = 2.0  # a heartbeat that hasn't moved for this many heartbeat intervals is stale
DEFAULT_INTERVAL = 300.0  # assumed when a heartbeat doesn't say (60 s ticks x 5)


def stale_threshold(hb: dict[str, Any] | None) -> float:
    """How long a heartbeat may stand still before it counts as stale: STALE_FACTOR times the
    interval the heartbeat itself declares, so readers need no other configuration."""
    interval = (hb or {}).get("interval_s")
    return STALE_FACTOR * (float(interval) if isinstance(interval, (int, float)) and interval > 0 else DEFAULT_INTERVAL)


def failing(hb: dict[str, Any], threshold: float) -> bool:
    """Alive but failing: the heartbeat moves, but no tick has succeeded for `threshold`."""
    last_ok = hb.get("last_ok_tick") or hb.get("started_at")
    now = hb.get("time")
    if not isinstance(now, (int, float)) or not isinstance(last_ok, (int, float)):
        return bool(hb.get("consecutive_failures"))
    return bool(hb.get("consecutive_failures")) and now - last_ok >= threshold


def write_heartbeat(path: str, data: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps({"version": HEARTBEAT_VERSION, **data}, sort_keys=True) + "\n").encode())


def read_heartbeat(path: str, owner: int | None = None) -> dict[str, Any] | None:
    """The heartbeat, or None if there is none. A file that can't be parsed reads as None too:
    readers treat it like a missing heartbeat (a daemon that never wrote a good one)."""
    raw = read_small(path, owner=owner)
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class PidInfo:
    pid: int
    pid_start: int | None
    boot_id: str | None
    argv: list[str]
    home: str | None
    started_at: float | None

    @property
    def proc(self) -> ProcId | None:
        return ProcId(self.pid, self.pid_start) if self.pid_start is not None else None


def write_pidfile(path: str, me: ProcId, argv: list[str], home: str, started_at: float) -> None:
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
    details: dict[str, Any] = {}
    if len(lines) > 1:
        try:
            details = json.loads(lines[1])
        except ValueError:
            details = {}
    argv = details.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        argv = []
    start = details.get("pid_start")
    return PidInfo(pid, start if isinstance(start, int) else None, details.get("boot_id"), argv,
                   details.get("home"), details.get("started_at"))


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
