"""Controlling the daemon process: start it in the background, stop it, and find out whether
the process a pidfile names is really our daemon before sending it anything."""

from __future__ import annotations

import os
import sys
import time
from collections import namedtuple

from hermes_cron.contract.heartbeat import (ForeignHeartbeat, Heartbeat, read_any_heartbeat, read_heartbeat,
                                           stale_threshold)
from hermes_cron.contract.pidfile import read_pidfile, verify
from hermes_cron.contract.command import STDERR_FILE, daemon_argv, open_stderr_file
from hermes_cron.errors import DaemonError, HermesCronError
from hermes_cron.contract.paths import Home
from hermes_cron.logic.zones_lite import utc_iso
from hermes_cron.contract.procinfo import ProcId, cmdline

START_TIMEOUT = 30.0


class DaemonLookup(namedtuple("DaemonLookup", "info proc")):
    """What the pidfile says (a PidInfo or None) and whether it names our live daemon (`proc`,
    a ProcId set only for a verified hermes-cron daemon). A named tuple, like the contract's
    records (contract/heartbeat.py says why)."""

    __slots__ = ()

    @property
    def running(self) -> bool:
        return self.proc is not None

    @property
    def stale(self) -> bool:
        return self.info is not None and self.proc is None

    def describe_stale(self) -> str:
        assert self.info is not None
        pid = self.info.pid
        argv = cmdline(pid)
        if not argv:
            return f"pid {pid} is gone"
        return f"pid {pid} is now {' '.join(argv)[:60]!r}, not this daemon"


def lookup(home: Home) -> DaemonLookup:
    info = read_pidfile(home.pidfile)
    return DaemonLookup(info, verify(info))


def remove_stale_pidfile(home: Home, found: DaemonLookup) -> None:
    """Remove a pidfile that names no live daemon (never signalling the process it names)."""
    if found.stale:
        try:
            os.unlink(home.pidfile)
        except FileNotFoundError:
            pass


def _check_readable_install() -> None:
    """root acting for a user starts the daemon as that user: its Python must be readable."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in (sys.executable, here):
        if not os.access(path, os.R_OK | os.X_OK):
            raise DaemonError(f"the home's owner (uid {os.geteuid()}) can't read {path}, so a daemon can't "
                              "start as that user; install hermes-cron where that user can read it, or start "
                              "it as that user (or with its systemd unit)")


def start(home: Home, run_args: list[str], timeout: float = START_TIMEOUT,
          as_user: bool = False) -> tuple[ProcId, bool]:
    """Start the daemon in the background; return (its identity, whether it was already running).

    Returns once the daemon has written its first heartbeat with a successful first tick.
    Otherwise the daemon is stopped and DaemonError carries the daemon's own error. `as_user`:
    root became the home's owner to run this, so the new daemon runs as that user."""
    found = lookup(home)
    if found.proc is not None:
        return found.proc, True
    remove_stale_pidfile(home, found)
    home.ensure()
    if as_user:
        _check_readable_install()
    import subprocess

    argv = daemon_argv(home, run_args)
    errors = os.path.join(home.cron, STDERR_FILE)
    err = open_stderr_file(home, truncate=True)
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd="/",
                                 start_new_session=True, close_fds=True)
    finally:
        os.close(err)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = child.poll()
        if code is not None:
            other = lookup(home).proc
            if other is not None:  # another start won the race: that daemon is ours too
                return other, True
            raise DaemonError(f"the daemon exited at start (code {code}): {_last_error(errors, home)}")
        hb = read_heartbeat(home.heartbeat)
        if hb is not None and hb.pid == child.pid:
            me = ProcId.of(child.pid)
            if hb.last_ok_tick is None and hb.last_error is not None:
                _terminate(child)
                raise DaemonError(f"the daemon's first tick failed, so it was stopped: {hb.last_error.message}")
            assert me is not None
            return me, False
        time.sleep(0.02)
    _terminate(child)
    raise DaemonError(f"the daemon wrote no heartbeat within {timeout:g} s, so it was stopped: "
                      f"{_last_error(errors, home)}")


def _terminate(child) -> None:  # a subprocess.Popen
    child.terminate()
    try:
        child.wait(10)
    except Exception:  # noqa: BLE001 - TimeoutExpired; whatever it is, make sure it is gone
        child.kill()
        child.wait()


def _last_error(path: str, home: Home) -> str:
    """The daemon's own last error line; without one, what the file system says is wrong."""
    from hermes_cron.contract.files import fs_fault, read_small

    raw = read_small(path) or b""
    lines = [line.strip() for line in raw.decode(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("hermes-cron:") or "Error" in line:
            return line
    if lines:
        return lines[-1]
    fault = fs_fault(home.cron)
    return f"it left no error output, and {home.cron}: {fault}" if fault else "it left no error output"


def stop(home: Home, timeout: float = 10.0) -> tuple[DaemonLookup, bool, str | None]:
    """SIGTERM the verified daemon, wait up to `timeout`, then SIGKILL. Returns (what was found,
    whether it had to be killed, a warning to show). Never signals a process that isn't our
    daemon."""
    found = lookup(home)
    warning = None
    try:
        mark_stopped(home)
    except (OSError, HermesCronError) as e:  # stopping matters more than the mark
        from hermes_cron.errors import file_system_error

        why = file_system_error(e, "can't leave the stop mark") if isinstance(e, OSError) else e
        warning = f"{why}; a watchdog may start the daemon again"
    if found.proc is None:
        _remove_quietly(home, found)
        return found, False, warning
    gone, killed = found.proc.terminate(timeout)
    if not gone:
        raise DaemonError(f"the daemon (pid {found.proc.pid}) survived SIGKILL")
    _remove_quietly(home, lookup(home))
    return found, killed, warning


def _remove_quietly(home: Home, found: DaemonLookup) -> None:
    try:
        remove_stale_pidfile(home, found)
    except OSError:
        pass


def mark_stopped(home: Home) -> None:
    """Leave word that the daemon was stopped on purpose, so a watchdog doesn't start it again.
    The next daemon to start removes it."""
    import json

    from hermes_cron.contract.files import atomic_write

    if os.path.isdir(home.cron):
        atomic_write(home.stopped_marker, (json.dumps({"at": time.time(), "pid": os.getpid()}) + "\n").encode(),
                     durable=False)


def heartbeat_health(hb: Heartbeat | None, now: float) -> dict:
    """Judge a heartbeat read from disk: its age against the stale threshold, and tick health."""
    if hb is None:
        return {"heartbeat": None, "stale": True, "failing": False, "waiting": False}
    threshold = stale_threshold(hb)
    age = max(0.0, now - hb.time)
    # Waiting for another ticker's lock is not failing; waiting longer than the threshold is unhealthy.
    waiting = hb.lock_wait is not None and now - hb.lock_wait.since > threshold
    return {"heartbeat": hb, "age": age, "threshold": threshold, "stale": age > threshold,
            "failing": hb.last_tick_failed, "waiting": waiting}


def status_report(home: Home, now: float | None = None) -> tuple[dict, int]:
    """Everything `status` shows, and its LSB exit code: 0 running and healthy, 1 dead but the
    pidfile exists, 3 not running, 150 running but unhealthy (stale heartbeat or failing ticks)."""
    from hermes_cron import __version__

    now = time.time() if now is None else now
    found = lookup(home)
    any_hb = read_any_heartbeat(home.heartbeat)
    hb = any_hb if isinstance(any_hb, Heartbeat) else None
    if hb is not None and found.proc is not None and hb.pid != found.proc.pid:
        hb = None  # a heartbeat from an earlier daemon says nothing about this one
    health = heartbeat_health(hb if found.running else None, now)
    report: dict = {
        "running": found.running, "pid": found.proc.pid if found.proc else None, "home": home.root,
        "version": __version__, "uptime_s": None, "pidfile": home.pidfile if found.info else None,
        "stale_pidfile": found.describe_stale() if found.stale else None,
        "heartbeat_age_s": None, "heartbeat_stale_after_s": None, "heartbeat_stale": None,
        "ticks": None, "last_ok_tick": None, "last_ok_age_s": None, "last_error": None, "lock_wait": None,
        "heartbeat_foreign": None,
        "unhealthy_reason": None, "healthy": False,
        "store_error": None, "jobs": {}, "invalid_jobs": [], "in_flight": [], "next": [], "recent_failures": [],
    }
    if found.proc is not None:
        report["uptime_s"] = round(now - found.proc.started_at(), 1)
    if health["heartbeat"] is not None:
        assert hb is not None
        report.update(heartbeat_age_s=round(health["age"], 1), heartbeat_stale_after_s=health["threshold"],
                      heartbeat_stale=health["stale"], ticks=hb.ticks, last_ok_tick=utc_iso(hb.last_ok_tick),
                      last_ok_age_s=round(max(0.0, now - hb.last_ok_tick), 1) if hb.last_ok_tick else None,
                      last_error={**hb.last_error._asdict(), "time": utc_iso(hb.last_error.time)}
                      if hb.last_error else None)
        if hb.lock_wait is not None:
            report["lock_wait"] = {**hb.lock_wait._asdict(), "since": utc_iso(hb.lock_wait.since),
                                   "waited_s": round(max(0.0, now - hb.lock_wait.since), 1)}
    if isinstance(any_hb, ForeignHeartbeat):
        report["heartbeat_foreign"] = {"age_s": round(max(0.0, now - any_hb.time), 1), "pid": any_hb.pid}
    report["healthy"] = bool(found.running and health["heartbeat"] is not None and not health["stale"]
                             and not health["failing"] and not health["waiting"])
    report["unhealthy_reason"] = _unhealthy_reason(report, health) if found.running and not report["healthy"] \
        else None
    _store_facts(home, report, now)
    report["hermes"] = None
    if home.hermes_here:
        from hermes_cron.app.hermes_view import hermes_report  # only where Hermes lives: status stays fast

        h = hermes_report(home, now)
        report["hermes"] = {k: v for k, v in h.items() if k != "jobs"} | {
            "jobs_ticked_by_hermes": sum(1 for j in h["jobs"] if j["ticked_by"] != "hermes-cron"),
            "jobs_ticked_by_us": sum(1 for j in h["jobs"] if j["ticked_by"] == "hermes-cron")}
    if found.running:
        code = 0 if report["healthy"] else 150
    else:
        code = 1 if found.info is not None else 3
    return report, code


def _unhealthy_reason(report: dict, health: dict) -> str:
    if report["heartbeat_foreign"] is not None:
        return "the heartbeat file was written by another ticker, so this daemon's health can't be read"
    if health["heartbeat"] is None:
        return "no heartbeat from this daemon yet"
    if health["stale"]:
        return "the heartbeat is stale: the daemon may be hung"
    if health["waiting"]:
        w = report["lock_wait"]
        return (f"its ticks have waited {w['waited_s']:g} s for the tick lock, held by pid {w['holder_pid'] or '?'}"
                + (f" ({w['holder_command']})" if w["holder_command"] else ""))
    return "its ticks are failing"


def _jobs_file_fault(home: Home, reconciled_sig: str | None) -> str | None:
    """What is wrong with hermes-cron-jobs.json, if anything: read only when it changed since it was last
    reconciled (status must stay fast)."""
    from hermes_cron.contract.files import MISSING, read_private, signature

    try:
        sig = signature(home.jobs)
        if sig == MISSING or sig.text() == reconciled_sig:
            return None
        from hermes_cron.store.jobstore import parse

        data = read_private(home.jobs)
        if data is not None:
            parse(data, home.jobs)
    except HermesCronError as e:
        return str(e)
    return None


def _store_facts(home: Home, report: dict, now: float) -> None:
    """Job counts, runs in flight, next fire times and recent failures (store/sqlite_status.py
    reads them without loading any schedule code: status must start fast)."""
    if home.store is not None:
        from hermes_cron.store.pg_status import read_status_facts
    else:
        from hermes_cron.store.sqlite_status import read_status_facts
    if home.store is None and not os.path.exists(home.state):
        report["jobs"] = {"enabled": 0, "paused": 0, "completed": 0, "invalid": 0}
        report["store_error"] = _jobs_file_fault(home, None)
        return
    try:
        facts = read_status_facts(home, now)
    except HermesCronError as e:  # status reports a broken store
        report["store_error"] = str(e)
        return
    report.update(jobs=facts.jobs, in_flight=facts.in_flight, next=facts.next,
                  recent_failures=facts.recent_failures,
                  invalid_jobs=[{"job": name, "reason": why} for name, why in sorted(facts.invalid.items())],
                  store_error=_jobs_file_fault(home, facts.reconciled_sig))
