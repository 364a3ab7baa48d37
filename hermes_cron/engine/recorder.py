"""Recording how runs ended: a run's result (its supervisor's, or one whoever settles it
gives) goes to the store as the run's end, its job's history is pruned to the runs it keeps, and
the pruned runs' folders are deleted. Used by the dispatcher, and by the commands that end
runs themselves (a pause cancelling a claimed run, `stop --jobs`, `trigger` in the foreground).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable

from hermes_cron.contract.files import remove_tree
from hermes_cron.contract.paths import Home
from hermes_cron.errors import HermesCronError
from hermes_cron.logic.hermes import settle_argv
from hermes_cron.logic.run import Outcome, RunResult
from hermes_cron.store.base import RunRecord, Store
from hermes_cron.store.runfiles import RUN_DEPTH, RunFiles

if TYPE_CHECKING:  # imported when the first ping goes: its thread's queue is 0.2 MB of an idle daemon
    from hermes_cron.engine.pinger import Pinger


class Recorder:
    def __init__(self, home: Home, store: Store, log: Any, clock: Callable[[], float] = time.time):
        self.home = home
        self.store = store
        self.log = log
        self.clock = clock
        self._pinger: Pinger | None = None
        self.wait_pings = True  # a command waits for its pings before it exits; the daemon doesn't
        self.on_recorded: Callable[[RunRecord, RunResult], None] | None = None  # the daemon's retries
        self.to_note = False  # a run ended since the notifier last looked (engine/notifier.py)

    def flush_pings(self, timeout: float = 5.0) -> None:
        """Send what is queued before the process exits (bounded: a dead service can't hold us)."""
        if self._pinger is not None:
            self._pinger.flush(timeout)

    @property
    def pinger(self) -> Pinger:
        if self._pinger is None:
            from hermes_cron.engine.pinger import Pinger

            self._pinger = Pinger(self.log)
        return self._pinger

    def files(self, job: str, run_id: int) -> RunFiles:
        return RunFiles(self.home.run_dir(job, run_id))

    def finish(self, run: RunRecord, outcome: Outcome, reason: str | None) -> bool:
        """Record a run that ended without a result of its supervisor's."""
        return self.record(run, RunResult(outcome, self.clock(), reason=reason))

    def record(self, run: RunRecord, result: RunResult) -> bool:
        """Record the run's result (DONE), prune its job's history, and log it."""
        spec = run.job_spec
        # A failed attempt that may be retried is held from the notifications until the retry is
        # decided (the later attempt speaks for the slot): released below, or by the HELD_FOR rule.
        hold = self.on_recorded is not None and spec is not None and spec.retries > 0 and \
            result.outcome in (Outcome.FAILED, Outcome.TIMED_OUT)
        changed, pruned = self.store.finish(run.id, result, spec.keep_runs if spec is not None else None, hold)
        for old in pruned:
            self._remove_run_folder(run.job, old)
        if changed:
            started = result.started_at or run.started_at
            fields = dict(job=run.job, run_id=run.id, status=str(result.outcome), exit_code=result.exit_code,
                          signal=result.signal,
                          duration_s=round(result.ended_at - started, 3) if started else None)
            if result.reason:
                fields["reason"] = result.reason
            (self.log.info if result.outcome is Outcome.SUCCEEDED else self.log.warning)("job.finished", **fields)
            if spec is not None and spec.hermes is not None:
                self._settle_hermes(run, spec.argv, result)
            if spec is not None and spec.ping:
                self.pinger.ended(spec.ping, self.home.root, run.id, str(result.outcome), result.exit_code)
                if self.wait_pings:
                    self.pinger.flush()
            if self.on_recorded is not None:
                self.on_recorded(run, result)
            if hold:
                try:
                    self.store.release_note(run.id)
                except HermesCronError as e:
                    self.log.error("notify.release_failed", run_id=run.id, error=str(e))
            self.to_note = True
        return changed

    def _settle_hermes(self, run: RunRecord, argv: list[str], result: RunResult) -> None:
        """A Hermes job's runner that was killed (timeout, stop, signal) or lost with its
        supervisor may have left Hermes's execution record and fire claim open: Hermes's own
        code closes them (hermes_fire.py settle), in the background, once per run; a runner that
        closed them itself makes it a no-op."""
        pid = result.job_pid or run.job_pid
        cut_short = result.outcome in (Outcome.TIMED_OUT, Outcome.INTERRUPTED) or result.signal is not None
        settle = settle_argv(argv, pid, f"hermes-cron run {run.id}: {result.reason or result.outcome}") \
            if cut_short and pid else None
        if settle is None:
            return
        import subprocess  # (rarely needed: not loaded with the daemon; engine/jobrun.py's load_popen)

        try:
            subprocess.Popen(settle,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True)
        except OSError as e:
            self.log.error("hermes.settle_failed", job=run.job, run_id=run.id, error=str(e))

    def _remove_run_folder(self, job: str, run_id: int) -> None:
        """Delete a pruned run's folder through descriptors (files.remove_tree): a symlink on
        the way or inside is never followed, so nothing outside the home is ever deleted."""
        folder, name = os.path.split(self.home.run_dir(job, run_id))
        try:
            remove_tree(folder, name, RUN_DEPTH - 1)
        except FileNotFoundError:
            pass
        except (OSError, HermesCronError) as e:
            self.log.error("run.prune_failed", job=job, run_id=run_id, error=str(e))

    def collect(self) -> list[RunRecord]:
        """Record every finished run whose result file waits; return the runs still open."""
        still_open = []
        for run in self.store.open_runs():
            result = self.files(run.job, run.id).read_result()
            if result is not None:
                self.record(run, result)
            else:
                still_open.append(run)
        return still_open
