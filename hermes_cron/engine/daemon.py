"""The daemon: a loop of named steps around tick(), dispatch, heartbeat and sleep.

One daemon per HERMES_HOME, enforced by a lock held for its lifetime. Ticks fall on
wall-clock multiples of the tick interval; the loop also wakes for a due slot that comes
sooner, for a trigger request (SIGUSR1), for a finished run (SIGCHLD) and for a stop request,
and otherwise sleeps. Signal handlers only set flags; the loop does the work.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from hermes_cron import __version__, faults
from hermes_cron.contract.heartbeat import LockWait, TickError
from hermes_cron.contract.pidfile import remove_pidfile, write_pidfile
from hermes_cron.engine.dispatch import Dispatcher
from hermes_cron.engine.system import SYSTEM, System
from hermes_cron.errors import HermesCronError, LockBusy, LockFailed, TickLockBusy
from hermes_cron.contract.locks import FileLock
from hermes_cron.contract.notify import notify
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId, boot_id
from hermes_cron.logic.wake import boundary_after, next_wake, spare_wanted
from hermes_cron.store.migrate import NOTE, migrate
from hermes_cron.store.base import Store
from hermes_cron.store.sqlite import SqliteStore
from hermes_cron.engine.process import SignalFlags, raise_fd_limit, take_daemon_lock
from hermes_cron.engine.reporting import Health, log_report, status_line, write_beat
from hermes_cron.engine.ticker import Scheduler
from hermes_cron.engine.notifier import Notifier
from hermes_cron.engine.upkeep import Upkeep, node_of

LOCK_RETRY = 5.0  # after finding the tick lock held by another process, try again this much later
SPARE_LEAD = 0.05  # fork the spare supervisor only when nothing is due sooner than this
SPARE_DELAY = 0.05  # ... and no sooner than this after a dispatch
IDLE_WORK_LEAD = 0.2  # housekeeping (recording starts, the WAL checkpoint) only when nothing is due sooner,
CHECKPOINT_OVERDUE = 10  # unless it has waited this many ticks


@dataclass(frozen=True)
class Settings:
    """The daemon's options, as `run` was given them (contract/command.py's RUN_SPEC)."""

    tick_interval: float = 60.0
    heartbeat_every: int = 5
    max_concurrent: int | None = None
    lock_timeout: float = 5.0
    argv: tuple[str, ...] = ()
    lease: float = 30.0  # shared store: a run's lease (engine/cluster.py)
    ping: str | None = None  # pinged after every successful counted tick (engine/pinger.py)


class Daemon:
    def __init__(self, home: Home, settings: Settings, log: Any, system: System = SYSTEM,
                 reopen_logs: Any = None):
        self.home = home
        self.settings = settings
        self.log = log
        self.clock = system  # the wall clock, and the OS boundary the dispatcher uses
        self.reopen_logs = reopen_logs
        self.me = ProcId.me()
        self.boot_id = boot_id()
        self.health = Health()
        self.flags = SignalFlags()
        self.state: Store | None = None
        self.cluster: Any = None
        if home.store:  # a shared store: this daemon is a node of a cluster (loaded only then)
            from hermes_cron.engine.cluster import Cluster

            self.cluster = Cluster(home, self.me, log, settings.lease, settings.tick_interval)
        self.upkeep = Upkeep(home, node_of(self.cluster), self.me, log, shared=self.cluster is not None)
        self.notifier: Notifier | None = None
        self.scheduler: Scheduler | None = None
        self.dispatcher: Dispatcher | None = None
        self.lock = FileLock(home.daemon_lock, "the daemon lock")
        self.selector = selectors.DefaultSelector()
        self._wake_r = -1
        self._next_tick = 0.0
        self._target = 0.0  # the next moment something is due: a tick, a slot or a deadline
        self._last_dispatch = 0.0
        self._checkpoint_due = 0
        self._nofile: tuple[int, int] | None = None
        self._lock_retry_at = 0.0
        self._listen_fd = -1  # shared store: the LISTEN connection's socket

    # the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit code."""
        self._take_daemon_lock()
        try:
            faults.hit("daemon.start")
            try:
                os.unlink(self.home.stopped_marker)
            except FileNotFoundError:
                pass
            self._install_signals()
            self._nofile = raise_fd_limit()
            self.health.started_at = self.clock.time()
            write_pidfile(self.home.pidfile, self.me, list(self.settings.argv), self.home.root,
                          self.health.started_at)
            self.log.info("daemon.started", pid=self.me.pid, home=self.home.root, version=__version__,
                          tick_interval=self.settings.tick_interval,
                          heartbeat_every=self.settings.heartbeat_every)
            self._tick(counted=True, horizon=self.clock.time())
            self._heartbeat()
            notify(f"READY=1\nMAINPID={self.me.pid}\nSTATUS={self._status_line()}")
            while not self.flags.stop:
                horizon = self._sleep()  # until what is due next, doing the idle work meanwhile
                asked = self.flags.wake  # a trigger request or a changed job (SIGUSR1)
                self._handle_flags()  # logs reopened, supervisors reaped
                if self.flags.stop:
                    break
                counted = horizon >= self._next_tick  # a tick boundary, not an early wake
                if counted or asked or horizon >= self._target:
                    self._tick(counted, horizon)
                if counted and self.health.ticks % self.settings.heartbeat_every == 0:
                    self._heartbeat()
            self.log.info("daemon.stopping", signal=signal.Signals(self.flags.stop).name,
                          running=len(self.dispatcher.watched) if self.dispatcher else 0)
            notify("STOPPING=1")
            return 0
        except (SystemExit, KeyboardInterrupt) as e:  # logged, then honoured
            self.log.error("daemon.exiting", reason=type(e).__name__, exc_info=True)
            raise
        finally:
            self._teardown()

    def _tick(self, counted: bool, horizon: float) -> None:
        """One tick: claim what is due by `horizon` (now, or a slot a few ms ahead), start it
        (each run at its slot, never before), settle finished and orphaned runs."""
        now = max(horizon, self.clock.time())
        if counted:
            self.health.ticks += 1
            self._next_tick = boundary_after(now, self.settings.tick_interval)
        try:
            self._open_store()
            assert self.scheduler is not None and self.dispatcher is not None and self.state is not None
            if self.cluster is not None:
                self.cluster.step(self.state, self.dispatcher)  # leases, fencing, the database's clock
            report = self.scheduler.claim(now + self.dispatcher.offset)
            self.dispatcher.submit(report.claims)
            self.health.lock_hold.observe(report.lock_held)
            self.health.claims += len(report.claims)
            if report.claims:
                self._last_dispatch = self.clock.time()
            log_report(self.log, report, counted, self.health.ticks)
            self.dispatcher.reap_children()
            self.dispatcher.recover(now, unchanged=report.quiet)
            self.dispatcher.enforce(now)
            self._watch_fds()
            self.health.last_ok_tick = now
            self.health.consecutive_failures = 0
            if counted:
                self.upkeep.ticked(self.state, now, self.health.ticks % self.settings.heartbeat_every == 0)
                self.notifier.step(self.state, now, sweep=True)
            if counted and self.settings.ping:
                self.dispatcher.recorder.pinger.send(self.settings.ping, "tick")
            self.health.lock_wait = None
            self._checkpoint_due += counted  # counted ticks since the last checkpoint
            notify(lambda: f"WATCHDOG=1\nSTATUS={self._status_line()}")
        except (SystemExit, KeyboardInterrupt):  # logged by run(), then honoured
            raise
        except TickLockBusy as e:
            self._lock_busy(e, now)
        except BaseException as e:  # noqa: BLE001 - the loop must outlive any failure of one tick
            self._tick_failed(e, now)

    def _lock_busy(self, e: TickLockBusy, now: float) -> None:
        """Another ticker holds the tick lock: that is contention, not a failure. The loop goes on
        (heartbeat, systemd's watchdog, the runs it watches); the claims wait for the lock."""
        h = self.health
        new = h.lock_wait is None or h.lock_wait.holder_pid != e.holder_pid
        since = h.lock_wait.since if h.lock_wait is not None else now
        h.lock_wait = LockWait(since, e.holder_pid, e.holder_command)
        self._lock_retry_at = self.clock.time() + min(LOCK_RETRY, self.settings.tick_interval)
        (self.log.warning if new else self.log.debug)(
            "tick.lock_busy", holder_pid=e.holder_pid, holder_command=e.holder_command,
            waited_s=round(now - since, 1), note="another process holds the tick lock; claims wait for it, "
            "runs in flight are still watched")
        try:
            assert self.dispatcher is not None
            self.dispatcher.reap_children()
            self.dispatcher.recover(now)
            self.dispatcher.enforce(now)
            self._watch_fds()
        except HermesCronError as err:
            self.log.error("settle.failed", error=str(err))
        notify(f"WATCHDOG=1\nSTATUS=waiting for the tick lock, held by pid {e.holder_pid or '?'}"
               + (f" ({e.holder_command})" if e.holder_command else ""))

    def _tick_failed(self, e: BaseException, now: float) -> None:
        kind = type(e).__name__
        self.health.consecutive_failures += 1
        self.health.tick_failures += 1
        self.health.last_error = TickError(now, kind, str(e) or kind)
        extra: dict[str, Any] = {}
        if isinstance(e, LockBusy):
            extra = {"contention": True, "holder_pid": e.holder_pid}
        elif isinstance(e, LockFailed):
            extra = {"contention": False, "errno": e.errno_name}
        self.log.error("tick.failed", kind=kind, error=str(e), failures=self.health.consecutive_failures,
                       exc_info=e, **extra)
        if not isinstance(e, LockBusy):
            self._close_store()  # reopen from scratch next time: the file may have been fixed

    def _sleep(self) -> float:
        """Sleep until what is due next (logic/wake.py), or until a signal or a supervisor's
        notice wakes us, doing the idle work meanwhile; return the horizon to tick for."""
        now = self.clock.time()
        if self._next_tick - now > self.settings.tick_interval + 1.0:
            # The wall clock stepped back: tick on the new clock's boundaries rather than wait
            # for the old one (slots still never fire before their time).
            self.log.warning("clock.stepped_back", by_s=round(self._next_tick - now - self.settings.tick_interval, 3))
            self._next_tick = boundary_after(now, self.settings.tick_interval)
        next_due, due_count = None, 0
        offset = self.cluster.offset if self.cluster is not None else 0.0  # the store's clock minus ours
        if self.state is not None:
            try:
                stored = self.state.next_due()
                next_due = stored - offset if stored is not None else None  # on our clock from here on
                if next_due is not None and self.health.lock_wait is not None:
                    next_due = max(next_due, self._lock_retry_at)  # not before the retry
                if next_due is not None and next_due <= self._next_tick:
                    due_count = self.state.due_count(next_due + offset)
            except HermesCronError:
                pass
        deadline = self.dispatcher.next_deadline() if self.dispatcher is not None else None
        renew = self.cluster.wake_at(bool(self.dispatcher and self.dispatcher.watched)) if self.cluster else None
        if renew is not None:
            deadline = min(deadline, renew) if deadline is not None else renew
        wake = next_wake(self._next_tick, next_due, due_count, deadline)
        self._target = wake.target
        while not self.flags.any:
            now = self.clock.time()
            if now >= wake.at:
                return wake.target
            if wake.at - now > self.settings.tick_interval + 1.0 + (wake.target - wake.at):
                return now  # the wall clock stepped back while we slept: start over from it
            until = self._idle_work(now, wake.at, next_due)
            if until is None:
                continue
            for key, _ in self.selector.select(min(until - now, self.settings.tick_interval)):
                self._on_ready(key.fd)
        return self.clock.time()

    def _idle_work(self, now: float, wake_at: float, next_due: float | None = None) -> float | None:
        """One piece of housekeeping that fits before `wake_at`: the store's (a WAL checkpoint),
        or forking the spare supervisor when a slot is near (`next_due`), or dismissing it when
        none is. None if it did one (look again); else until when to sleep."""
        if self.notifier is not None and self.state is not None and wake_at - now > IDLE_WORK_LEAD and (
                self.notifier.due or self.dispatcher is not None and self.dispatcher.recorder.to_note):
            self.dispatcher.recorder.to_note = False
            self.notifier.step(self.state, now, sweep=False)
            return None
        if self.dispatcher is not None and self.dispatcher.started and wake_at - now > IDLE_WORK_LEAD:
            try:
                self.dispatcher.flush_started()
            except HermesCronError as e:  # the store is unusable now: the next tick reports it
                self.log.error("record.failed", error=str(e))
            return None
        if self._checkpoint_due and self.state is not None and (
                wake_at - now > IDLE_WORK_LEAD or self._checkpoint_due >= CHECKPOINT_OVERDUE):
            self._checkpoint_due = 0
            t0 = time.monotonic()
            try:
                if self.state.idle():
                    self.log.debug("checkpoint", took_ms=round((time.monotonic() - t0) * 1000, 2))
            except HermesCronError as e:
                self.log.warning("checkpoint.failed", error=str(e))
            return None
        if self.dispatcher is None or not self.dispatcher.keep_spare:
            return wake_at
        wanted = spare_wanted(next_due, now, self.settings.tick_interval)
        if wanted and self.dispatcher.spare is None and wake_at - now > SPARE_LEAD:
            # Fork the spare while nothing is due, and not right beside a start it would slow.
            spare_at = self._last_dispatch + SPARE_DELAY
            if now >= spare_at:
                self.dispatcher.ready_spare()
                return None
            return min(wake_at, spare_at)
        if wanted is False and self.dispatcher.spare is not None:
            self.dispatcher.dismiss_spare()
            return None
        return wake_at

    def _on_ready(self, fd: int) -> None:
        if fd == self._wake_r:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        elif self.cluster is not None and fd == self._listen_fd:
            if self.cluster.drain():
                self.flags.wake = True  # as SIGUSR1: a changed job or a trigger, from any host
            if self.cluster._listen is None:
                self.selector.unregister(fd)
                self._listen_fd = -1
        elif self.dispatcher is not None and fd == self.dispatcher.notify_fd:
            try:
                self.dispatcher.on_notify()
            except HermesCronError as e:  # the store is unusable now: the next tick reports it
                self.log.error("record.failed", error=str(e))
        elif self.dispatcher is not None:
            self.selector.unregister(fd)
            self.dispatcher.on_pidfd(fd)
            self._watch_fds()

    def _handle_flags(self) -> None:
        f = self.flags
        if f.reopen:
            f.reopen = False
            if self.reopen_logs is not None:
                self.reopen_logs()
            self.log.info("logs.reopened")
        if f.child:
            f.child = False
            if self.dispatcher is not None:
                try:
                    self.dispatcher.reap_children()
                except HermesCronError as e:  # the store is unusable now (unreachable): the next tick retries
                    self.log.error("record.failed", error=str(e))
                self._watch_fds()
        f.wake = False

    def _heartbeat(self) -> None:
        write_beat(self.home, self.log, self.settings, self.health, self.me, self.boot_id, self.state, self.dispatcher,
                   self.clock.time())

    # steps' helpers ---------------------------------------------------------------------

    def _open_store(self) -> None:
        if self.state is not None:
            return
        self.home.ensure()
        if self.cluster is not None:
            self.state = self.cluster.open()
        else:
            if migrate(self.home):
                self.log.warning("store.migrated", note=NOTE, path=self.home.jobs)
            self.state = SqliteStore(self.home, busy_timeout=self.settings.lock_timeout, manual_checkpoints=True)
        # Our own ticks hold the tick lock for milliseconds; another ticker may hold it for as long
        # as its jobs run (the Hermes agent's `cron tick`): wait a quarter tick at most, then
        # retry later (_lock_retry_at) with the loop going on meanwhile.
        wait = min(self.settings.lock_timeout, max(0.05, self.settings.tick_interval / 4))
        self.scheduler = Scheduler(self.home, self.state, self.me, self.boot_id, wait)
        if self.dispatcher is None:
            self.dispatcher = Dispatcher(self.home, self.state, self.me, self.log, self.settings.max_concurrent,
                                         nofile=self._nofile, spare=True, system=self.clock)
            # The spare supervisor is forked when idle and a slot is near (_idle_work), never here:
            # what the start-up writes after a fork would stay private in it (4.1 MB forked here,
            # 2.7 MB after the start-up; bench_tick --only idle).
        else:
            self.dispatcher.store = self.dispatcher.recorder.store = self.state
        self.upkeep.opened(self.state, self.clock.time())
        if self.notifier is None:
            self.notifier = Notifier(self.home, self.log, lambda: self.scheduler.loaded.defaults
                                     if self.scheduler is not None else {})

    def _close_store(self) -> None:
        if self.state is not None:
            try:
                self.state.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too; it is dropped anyway
                pass
        self.state = None
        self.scheduler = None

    def _watch_fds(self) -> None:
        if self.dispatcher is None:
            return
        if self.cluster is not None and self._listen_fd < 0:
            fd = self.cluster.listen_fd()
            if fd is not None:
                self._listen_fd = fd
                self.selector.register(fd, selectors.EVENT_READ)
        fixed = {self._wake_r, self.dispatcher.notify_fd, self._listen_fd}
        registered = {key.fd for key in self.selector.get_map().values()} - fixed
        if self.dispatcher.notify_fd is not None and self.dispatcher.notify_fd not in self.selector.get_map():
            self.selector.register(self.dispatcher.notify_fd, selectors.EVENT_READ)
        for fd in set(self.dispatcher.pidfds()) - registered:
            self.selector.register(fd, selectors.EVENT_READ)
        for fd in registered - set(self.dispatcher.pidfds()):
            self.selector.unregister(fd)

    def _status_line(self) -> str:
        return status_line(self.health.ticks, self.health.consecutive_failures, self.dispatcher, self.state)

    # set-up and tear-down ---------------------------------------------------------------

    def _take_daemon_lock(self) -> None:
        take_daemon_lock(self.home, self.lock, self.me)

    def _install_signals(self) -> None:
        self._wake_r = self.flags.install()
        self.selector.register(self._wake_r, selectors.EVENT_READ)

    def _teardown(self) -> None:
        try:
            if self.dispatcher is not None:
                self.dispatcher.close()
                self.dispatcher.recorder.flush_pings()
            if self.dispatcher is not None and self.state is not None:
                self.dispatcher.reap_children()
            self.upkeep.stopped(self.state, self.clock.time())
        except Exception as e:  # noqa: BLE001 - shutting down: report and go on releasing
            self.log.error("daemon.teardown_failed", error=str(e), exc_info=True)
        self._close_store()
        remove_pidfile(self.home.pidfile, self.me)
        signal.set_wakeup_fd(-1)
        self.lock.release()
        self.log.info("daemon.stopped", pid=self.me.pid)
        sys.stderr.flush()
