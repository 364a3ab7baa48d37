"""Everything the watchdog asks of the operating system, behind one object, so the tests can put
a recording double in its place (and real-process tests use the real one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from hermes_cron.contract import PidInfo, read_heartbeat, read_pidfile, verify
from hermes_cron.procinfo import ProcId, boot_id


class System:
    def __init__(self, home: str):
        self.home = home
        self.cron = os.path.join(home, "cron")
        self._children: list[subprocess.Popen] = []

    # clocks
    def mono(self) -> float:
        return time.monotonic()

    def boot(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def boot_id(self) -> str:
        return boot_id()

    # the daemon's published state
    def heartbeat(self) -> dict[str, Any] | None:
        return read_heartbeat(os.path.join(self.cron, ".ticker_heartbeat"))

    def pidfile(self) -> PidInfo | None:
        return read_pidfile(os.path.join(self.cron, "hermes-cron.pid"))

    def daemon(self) -> ProcId | None:
        """The live, verified hermes-cron daemon of this home: pid, start time and command line."""
        return verify(self.pidfile())

    def stopped_on_purpose(self) -> bool:
        return os.path.exists(os.path.join(self.cron, ".stopped"))

    # acting
    def terminate(self, proc: ProcId, timeout: float) -> bool:
        """TERM (and CONT, in case it is stopped), wait, then KILL; True once it is gone."""
        return proc.terminate(timeout)[0]

    def start(self, argv: list[str]) -> int:
        """Start a daemon detached from us; its output goes to cron/daemon.stderr."""
        errors = os.path.join(self.cron, "daemon.stderr")
        with open(errors, "ab") as err:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd="/",
                                     start_new_session=True, close_fds=True)
        self._children.append(child)  # reaped by reap() once it exits, so no zombie stays
        return child.pid

    def default_argv(self) -> list[str]:
        return [sys.executable, "-m", "hermes_cron", "--home", self.home, "run",
                "--log-file", os.path.join(self.cron, "daemon.log")]

    def systemctl_restart(self, unit: str, user: bool) -> tuple[int, str]:
        argv = ["systemctl", *(["--user"] if user else []), "restart", unit]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        return proc.returncode, (proc.stderr or proc.stdout).strip()

    def systemctl_state(self, unit: str, user: bool) -> tuple[str, str]:
        """The unit's (ActiveState, SubState), e.g. ("active", "running"), ("activating", "auto-restart")."""
        argv = ["systemctl", *(["--user"] if user else []), "show", "-p", "ActiveState", "-p", "SubState", unit]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        props = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        return props.get("ActiveState", "unknown"), props.get("SubState", "unknown")

    def own_files(self, *paths: str) -> None:
        """Run as root on a home that belongs to someone else: leave our files theirs."""
        if os.geteuid() != 0:
            return
        try:
            st = os.stat(self.cron)
        except OSError:
            return
        if st.st_uid == 0:
            return
        for path in paths:
            try:
                os.chown(path, st.st_uid, st.st_gid)
            except OSError:
                pass

    def reap(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]
