"""Start and stop a real `hermes-cron run` for tests, and read what it logged and recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from hermes_cron.contract.paths import Home
from hermes_cron.store.base import RunRecord as Run
from hermes_cron.store.sqlite import SqliteStore

from conftest import cli_env, wait_for


class DaemonProc:
    def __init__(self, home: Home, *args: str, tick: float = 1.0, faults: str | None = None,
                 log_name: str = "daemon.log", **env: str):
        self.home = home
        self.log_path = os.path.join(os.path.dirname(home.root), log_name)
        extra = dict(env)
        if faults:
            extra["HERMES_CRON_FAULTS"] = faults
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hermes_cron", "run", "--tick-interval", str(tick), "--log-format", "json",
             "--log-file", self.log_path, "--log-level", "debug", *args],
            env=cli_env(home, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str | None = None, **match: Any) -> list[dict]:
        return read_events(self.log_path, name, **match)

    def wait_event(self, name: str, timeout: float = 10, count: int = 1, **match: Any) -> list[dict]:
        def found() -> list[dict] | None:
            if self.proc.poll() is not None and len(self.events(name, **match)) < count:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) before {name}: "
                                     f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            got = self.events(name, **match)
            return got if len(got) >= count else None

        return wait_for(found, timeout, what=f"{count} x {name} {match}")  # type: ignore[return-value]

    def wait_started(self, timeout: float = 15) -> None:
        self.wait_event("heartbeat", timeout)

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop on SIGTERM")

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()


def read_events(path: str, name: str | None = None, **match: Any) -> list[dict]:
    """The structlog events in a JSON-lines log file, by event name and field values."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if name is not None and e.get("event") != name:
            continue
        if all(e.get(k) == v for k, v in match.items()):
            out.append(e)
    return out


def runs(home: Home, job: str | None = None) -> list[Run]:
    store = SqliteStore(home)
    try:
        return list(reversed(store.history(job, 0)))
    finally:
        store.close()


def finished(home: Home, job: str) -> list[Run]:
    return [r for r in runs(home, job) if r.state == "done" and r.outcome not in ("skipped", "missed")]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_leftovers(home: Home) -> None:
    """Clean-up: stop every job process group and supervisor a test left behind."""
    for dirpath, _, filenames in os.walk(home.runs):
        for name, use_group in (("job.pid", True), ("start", False)):
            if name not in filenames:
                continue
            try:
                text = open(os.path.join(dirpath, name)).read()
                token = json.loads(text) if name == "start" else {}
                pid = token.get("supervisor_pid", token.get("reaper_pid")) if name == "start" else int(text.split()[0])
            except (OSError, ValueError, KeyError, IndexError):
                continue
            if not isinstance(pid, int):
                continue  # a token taken by a cancel, a replace or an abandon: no process
            try:
                (os.killpg if use_group else os.kill)(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def now() -> float:
    return time.time()
