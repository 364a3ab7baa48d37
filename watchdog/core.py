"""The watchdog: a loop of checks, each judged, each acted on, each logged with its evidence."""

from __future__ import annotations

import json
import os
import select
import signal
from typing import Any

from hermes_cron.errors import HermesCronError
from hermes_cron.contract.files import atomic_write, read_small
from hermes_cron.contract.heartbeat import ForeignHeartbeat, Heartbeat
from hermes_cron.contract.locks import FileLock
from hermes_cron.contract.notify import notify

from .judge import FAILING, FOREIGN, GONE, HEALTHY, STALE, STARTING, WAITING, Judge, Memory, Observation, Verdict
from .restarts import RestartBook
from .system import System

# --once exit codes (README, "The watchdog")
EXIT = {HEALTHY: 0, GONE: 1, STALE: 2, FAILING: 3, STARTING: 4, WAITING: 5, FOREIGN: 6}
START_WAIT = 30.0  # how long a restarted daemon gets to show its first heartbeat


class Watchdog:
    def __init__(self, system: System, log: Any, stale_after: float | None = None,
                 check_every: float | None = None, unit: str | None = None, user: bool = False,
                 kill_timeout: float = 10.0, book: RestartBook | None = None):
        self.sys = system
        self.log = log
        self.check_every = check_every
        self.unit = unit
        self.user = user
        self.kill_timeout = kill_timeout
        self.judge = Judge(stale_after)
        self.book = book or RestartBook()
        self.state_path = os.path.join(system.cron, ".watchdog.json")
        self.stop_signal = 0
        self._wake_r = -1
        self._last_state: str | None = None

    # state that survives the watchdog's own restart ------------------------------------

    def load(self) -> None:
        raw = read_small(self.state_path, owner=self.sys.home_uid)
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return
        self.book.load(data.get("restarts") or {})
        if data.get("memory"):
            self.judge.memory = Memory.from_dict(data["memory"])

    def save(self, verdict: Verdict | None = None) -> None:
        data = {"restarts": self.book.to_dict(), "memory": self.judge.memory.to_dict(),
                "restarts_in_window": len(self.book.recent(self.sys.wall())),
                "last_verdict": None if verdict is None else {"state": verdict.state, "reason": verdict.reason,
                                                              "at": self.sys.wall()}}
        try:
            atomic_write(self.state_path, (json.dumps(data) + "\n").encode(), durable=False,
                         owner=self.sys.file_owner)
        except (OSError, HermesCronError) as e:
            self.log.error("watchdog.state_unwritable", path=self.state_path, error=str(e))

    # one check ---------------------------------------------------------------------------

    def observe(self) -> Verdict:
        proc = self.sys.daemon()
        found = self.sys.any_heartbeat()
        o = Observation(found if isinstance(found, Heartbeat) else None, proc.pid if proc else None,
                        self.sys.boot_id(), self.sys.mono(), self.sys.boot(), self.sys.wall(),
                        found if isinstance(found, ForeignHeartbeat) else None)
        verdict = self.judge.observe(o)
        if verdict.slept:
            self.log.info("watchdog.resumed", slept_s=round(verdict.slept, 1),
                          note="the machine slept: grace period restarted")
        return verdict

    def check(self) -> Verdict:
        """Judge the daemon once and do what the verdict calls for."""
        verdict = self.observe()
        self.log.debug("watchdog.check", state=verdict.state, reason=verdict.reason, **verdict.evidence)
        wall = self.sys.wall()
        if verdict.state == HEALTHY:
            if not verdict.evidence.get("failures"):  # healthy means ticks succeed, not just a pulse
                if self.book.giving_up:
                    self.log.info("watchdog.recovered", **verdict.evidence)
                self.book.healthy(wall, stable_for=self.judge.threshold(self.sys.heartbeat()))
        elif verdict.state in (STALE, GONE) and (busy := self._systemd_busy()):
            # systemd is already starting, stopping or restarting it: that is not ours to race
            self.log.debug("watchdog.check", state=verdict.state, reason=f"unit is {busy}; left to systemd")
            self.judge.restart_grace(self.sys.mono())
        elif verdict.state == STALE:
            self.log.warning("watchdog.stale", reason=verdict.reason, **verdict.evidence)
            self.restart(verdict)
        elif verdict.state == GONE:
            if self._stopped_on_purpose():
                self.log.debug("watchdog.check", state="stopped", reason="the daemon was stopped on purpose")
            else:
                self.log.warning("watchdog.gone", reason=verdict.reason, **verdict.evidence)
                self.restart(verdict)
        elif verdict.state in (WAITING, FOREIGN):  # reported, never restarted for: a restart can't help
            if self._last_state != verdict.state:
                self.log.warning(f"watchdog.{verdict.state}", reason=verdict.reason, **verdict.evidence)
        elif verdict.state == FAILING:
            if self.book.failing_restart:
                if not self.book.giving_up:
                    self.book.giving_up = True
                    self.log.error("watchdog.giving_up", reason=verdict.reason,
                                   note="still failing after a restart; a restart won't fix this",
                                   restarts=len(self.book.recent(wall)), **verdict.evidence)
            else:
                self.log.warning("watchdog.failing", reason=verdict.reason, **verdict.evidence)
                if self.restart(verdict):
                    self.book.failing_restart = True
        self._last_state = verdict.state
        self.sys.reap()
        self.save(verdict)
        return verdict

    def _stopped_on_purpose(self) -> bool:
        if self.unit:
            return self.sys.systemctl_state(self.unit, self.user)[0] == "inactive"
        return self.sys.stopped_on_purpose()

    def _systemd_busy(self) -> str | None:
        """Under systemd, the unit's state if a start, stop or restart of it is under way."""
        if not self.unit:
            return None
        active, sub = self.sys.systemctl_state(self.unit, self.user)
        if active in ("activating", "deactivating", "reloading") or sub == "auto-restart":
            return f"{active}/{sub}"
        return None

    def restart(self, verdict: Verdict) -> bool:
        """Restart the daemon unless the backoff or the burst limit says wait; True if restarted."""
        wall = self.sys.wall()
        action, wait = self.book.decide(wall)
        recent = len(self.book.recent(wall))
        if action == "give-up":
            if not self.book.giving_up:
                self.book.giving_up = True
                self.log.error("watchdog.giving_up", reason=verdict.reason, restarts=recent,
                               window_s=self.book.window, retry_in_s=round(wait, 1), **verdict.evidence)
            return False
        if action == "backoff":
            self.log.warning("watchdog.backoff", wait_s=round(wait, 1), restarts=recent, **verdict.evidence)
            return False
        self.book.record(wall)
        self.log.warning("watchdog.restart", reason=verdict.reason, via="systemd" if self.unit else "pidfile",
                         restarts=recent + 1, **verdict.evidence)
        if self.unit:
            code, output = self.sys.systemctl_restart(self.unit, self.user)
            if code != 0:
                self.log.error("watchdog.restart_failed", unit=self.unit, code=code, output=output)
        else:
            self._restart_by_pidfile()
        self.judge.restart_grace(self.sys.mono())
        self.save(verdict)
        return True

    def _restart_by_pidfile(self) -> None:
        info = self.sys.pidfile()
        proc = self.sys.daemon()
        if proc is not None:
            if not self.sys.terminate(proc, self.kill_timeout):
                self.log.error("watchdog.kill_failed", pid=proc.pid)
                return
        argv = self.sys.daemon_argv(info)
        try:
            pid = self.sys.start(argv)
        except (OSError, HermesCronError) as e:
            self.log.error("watchdog.start_failed", argv=argv, error=str(e))
            return
        self.log.info("watchdog.started", pid=pid, argv=argv)

    # the loop ----------------------------------------------------------------------------

    def interval(self) -> float:
        if self.check_every is not None:
            return self.check_every
        return min(max(self.judge.threshold(self.sys.heartbeat()) / 4, 0.2), 30.0)

    def run(self) -> int:
        lock_path = os.path.join(self.sys.cron, ".watchdog.lock")
        lock = FileLock(lock_path, "the watchdog lock", owner=self.sys.file_owner)
        lock.acquire(0)
        try:
            self._install_signals()
            self.load()
            self.judge.restart_grace(self.sys.mono())  # a new watchdog gives the daemon a full threshold
            self.log.info("watchdog.started_watching", home=self.sys.home, unit=self.unit,
                          restarts_in_window=len(self.book.recent(self.sys.wall())))
            notify("READY=1")
            while not self.stop_signal:
                verdict = self.check()
                notify(f"WATCHDOG=1\nSTATUS=daemon {verdict.state}: {verdict.reason}"[:400])
                ready, _, _ = select.select([self._wake_r], [], [], self.interval())
                if ready:
                    try:
                        os.read(self._wake_r, 512)
                    except BlockingIOError:
                        pass
            self.log.info("watchdog.stopped", signal=signal.Signals(self.stop_signal).name)
            notify("STOPPING=1")
            return 0
        finally:
            lock.release()

    def once(self) -> int:
        self.load()
        verdict = self.observe()
        self.save(verdict)
        self.log.info("watchdog.check", state=verdict.state, reason=verdict.reason, **verdict.evidence)
        return EXIT.get(verdict.state, 4)

    def _install_signals(self) -> None:
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

        def on_stop(signum: int, frame: object) -> None:
            if self.stop_signal:
                raise SystemExit(128 + signum)  # a second signal: out at once
            self.stop_signal = signum

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
