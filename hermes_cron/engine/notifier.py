"""The daemon's notifications (logic/alerts.py decides them, store/journal.py keeps them):

1. note: the runs that ended since (any process may end one) become events, in one transaction of
   the store with the job's new state, so an event is never lost nor made twice;
2. send: the events still pending go to a hook runner (engine/hookrun.py), a detached process of
   its own, which claims each one (at most one runner ever runs an event), runs it with its
   timeout and records its outcome; the tick never waits for a hook;
3. sweep (at counted ticks): an event whose runner vanished before recording an outcome is
   recorded `lost` and not run again; one a runner never claimed is handed to a new runner.

Events pending when the daemon stopped or crashed are sent by the next daemon.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Hashable

from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import host_name
from hermes_cron.errors import HermesCronError
from hermes_cron.logic.alerts import Alerts, decide
from hermes_cron.logic.zones_lite import utc_iso
from hermes_cron.store.base import RunRecord
from hermes_cron.store.journal import Planned
from hermes_cron.store.runfiles import RunFiles

if TYPE_CHECKING:
    import subprocess

TAIL = 4096  # bytes of output a hook is given
REASON = 2000


def payload(home: Home, run: RunRecord, event: str, previous: str | None, host: str) -> dict[str, Any]:
    """The facts a hook is given (JSON on stdin or in the POST; HERMES_CRON_* variables)."""
    tail = RunFiles(home.run_dir(run.job, run.id)).tail(TAIL) if run.started_at is not None else ""
    return {"event": event, "job": run.job, "run_id": run.id, "attempt": run.attempt, "trigger": str(run.trigger),
            "scheduled": utc_iso(run.scheduled), "started_at": utc_iso(run.started_at),
            "ended_at": utc_iso(run.ended_at), "status": None if run.outcome is None else str(run.outcome),
            "exit_code": run.exit_code, "signal": run.signal, "reason": (run.reason or "")[:REASON] or None,
            "missed_count": run.missed_count, "output_tail": tail, "previous_state": previous, "host": host,
            "home": home.root}


class Notifier:
    def __init__(self, home: Home, log: Any, defaults: Callable[[], dict]):
        self.home = home
        self.log = log
        self.defaults = defaults
        self.host = host_name()
        self.due = True  # runs may have ended unnoted (by us, by a command, before a restart)
        self._runners: dict[int, subprocess.Popen] = {}  # event id -> the runner it was handed to
        self._defaults: dict = {}  # as last read (a file that can't be read now keeps them)
        self._quiet_at: Hashable | None = None  # the store's data_version when a step left nothing to do

    def plan(self, run: RunRecord, previous: str | None, retried: bool) -> Planned:
        if retried:
            return Planned(None, [])  # the slot's later attempt speaks for it
        spec = run.job_spec
        alerts = spec.alerts(self._defaults) if spec is not None else Alerts.of({}, self._defaults)
        state, event, targets = decide(str(run.outcome), previous, alerts)
        if not targets:
            return Planned(state, [])
        body = json.dumps(payload(self.home, run, str(event), previous, self.host))
        return Planned(state, [(str(event), kind, target, body, alerts.hook_timeout) for kind, target in targets])

    def step(self, store: Any, now: float, sweep: bool) -> None:
        """Note what ended, and send what is pending; with `sweep`, settle vanished runners.
        Nothing at all when nobody wrote to the store since a step that left no run to note (nor
        one held for its retry, which comes due with time alone), no event open and no runner:
        an idle daemon's step is one statement."""
        self.due = False
        try:
            version = store.data_version()  # (read first: a write after it is seen next time)
            if version is not None and version == self._quiet_at and not self._runners:
                return
            try:
                self._defaults = self.defaults()
            except HermesCronError:
                pass
            made = store.note_runs(self.plan, now)
            if made:
                self.log.info("notify.events", made=made)
            pending = []
            events = store.open_events()
            for e in events:
                runner = self._runners.get(e.id)
                if e.state == "pending" and (runner is None or (sweep and runner.poll() is not None)):
                    pending.append(e.id)  # never handed out, or its runner ended without claiming it
                elif e.state == "running" and sweep and e.runner_host == self.host and e.runner is not None \
                        and not e.runner.alive():  # (another host's runner is that host's to settle)
                    store.end_event(e.id, None, now, "lost", None, f"its runner (pid {e.runner_pid}) ended before "
                                    "recording how the hook went; not run again (at most once)")
                    self.log.warning("notify.lost", event_id=e.id, job=e.job, runner_pid=e.runner_pid)
            quiet = not made and not events and not self._runners and not store.unnoted()
        except HermesCronError as err:
            self.log.error("notify.failed", error=str(err))
            self.due = True
            return
        if pending:
            self._launch(pending)
        for event_id, runner in list(self._runners.items()):
            if runner.poll() is not None:
                del self._runners[event_id]
        self._quiet_at = version if quiet else None

    def _launch(self, ids: list[int]) -> None:
        import subprocess  # (loaded with the first hook, not with the daemon: engine/jobrun.py's load_popen)

        argv = [sys.executable, "-m", "hermes_cron.engine.hookrun", "--home", self.home.root]
        if self.home.store:
            argv += ["--store", self.home.store]
        try:
            runner = subprocess.Popen([*argv, *map(str, ids)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                                      cwd="/", env=os.environ.copy())
        except OSError as e:
            self.log.error("notify.runner_failed", error=str(e), events=ids)
            return
        for event_id in ids:
            self._runners[event_id] = runner
        self.log.info("notify.sending", events=ids, runner_pid=runner.pid)
