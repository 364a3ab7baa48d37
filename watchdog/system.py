"""Everything the watchdog asks of the operating system, behind one object, so the tests can put
a recording double in its place (and real-process tests use the real one)."""

from __future__ import annotations

import os
import subprocess
import time

from hermes_cron.contract.access import home_owner
from hermes_cron.contract.heartbeat import ForeignHeartbeat, Heartbeat, read_any_heartbeat
from hermes_cron.contract.pidfile import PidInfo, read_pidfile, verify
from hermes_cron.contract.command import daemon_argv, open_stderr_file, recorded_run_options
from hermes_cron.contract.files import read_small
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId, boot_id

class System:
    def __init__(self, home: str, run_args: list[str] | None = None):
        self.home = home
        self.cron = os.path.join(home, "cron")
        self.run_args = run_args
        self._children: list[subprocess.Popen] = []
        owner = home_owner(home)  # decided once: the home folder's owner, read on a descriptor
        self.home_uid = owner[0] if owner else os.geteuid()
        # root on someone else's home: every file we create there is given to its owner, and
        # every folder of ours we open there must be that owner's.
        self.file_owner = self.home_uid if os.geteuid() == 0 and self.home_uid != 0 else None

    # clocks
    def mono(self) -> float:
        return time.monotonic()

    def boot(self) -> float:
        return time.clock_gettime(time.CLOCK_BOOTTIME)

    def wall(self) -> float:
        return time.time()

    def boot_id(self) -> str:
        return boot_id()

    # the daemon's published state
    def heartbeat(self) -> Heartbeat | None:
        found = self.any_heartbeat()
        return found if isinstance(found, Heartbeat) else None

    def any_heartbeat(self) -> Heartbeat | ForeignHeartbeat | None:
        """The heartbeat file's content: ours, another ticker's, or None."""
        return read_any_heartbeat(os.path.join(self.cron, ".ticker_heartbeat"), owner=self.home_uid)

    def pidfile(self) -> PidInfo | None:
        return read_pidfile(os.path.join(self.cron, "hermes-cron.pid"), owner=self.home_uid)

    def daemon(self) -> ProcId | None:
        """The live, verified hermes-cron daemon of this home: pid, start time and command line."""
        return verify(self.pidfile())

    def stopped_on_purpose(self) -> bool:
        return read_small(os.path.join(self.cron, ".stopped"), owner=self.home_uid) is not None

    # acting
    def terminate(self, proc: ProcId, timeout: float) -> bool:
        """TERM (and CONT, in case it is stopped), wait, then KILL; True once it is gone."""
        return proc.terminate(timeout)[0]

    def start(self, argv: list[str]) -> int:
        """Start a daemon detached from us; its output goes to cron/daemon.stderr (opened without
        following a symlink or writing through a hard link, and left the home owner's)."""
        err = open_stderr_file(Home(self.home), truncate=False, owner=self.file_owner)
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd="/",
                                     start_new_session=True, close_fds=True)
        finally:
            os.close(err)
        self._children.append(child)  # reaped by reap() once it exits, so no zombie stays
        return child.pid

    def daemon_argv(self, info: PidInfo | None) -> list[str]:
        """The daemon to start: always this installation's `hermes-cron run` for this home, never
        a program named by a file. Its options are the ones given to the watchdog; without
        those, the ones the daemon's own pidfile recorded (only the known `run` options, and only
        when the pidfile is this user's own word); else the defaults."""
        options = self.run_args if self.run_args else self._pidfile_options(info)
        return daemon_argv(Home(self.home), options)

    def _pidfile_options(self, info: PidInfo | None) -> list[str]:
        if info is None or self.file_owner is not None:
            return []
        return recorded_run_options(info.argv)

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

    def reap(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]
