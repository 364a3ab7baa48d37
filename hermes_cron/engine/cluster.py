"""A daemon's part in a cluster on the shared store (`--store postgresql://...`): its node and
epoch, the leases of its runs, the clock offset to the database, and the runs of dead nodes.

Every `lease / 3` seconds (and at each tick) the daemon renews its node's heartbeat and its runs'
leases in one transaction, and writes each run's lease end, on this host's clock less a safety
margin, to the run's `lease` file: the run's supervisor stops the job when that time passes
without a renewal (this daemon dead and not restarted in time, the database unreachable, the
host frozen), so a peer never takes over a run that is still going. A renewal that finds the
node fenced (a peer settled its runs while it was frozen or cut off) stops every local run at
once and registers a new epoch before claiming again. Runs whose lease ran out anywhere are
recorded `lost` by whichever live daemon sees them first.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from hermes_cron import __version__
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.errors import HermesCronError
from hermes_cron.store import pg_nodes
from hermes_cron.store.postgres import PgStore
from hermes_cron.store.runfiles import LEASE as LEASE_FILE
from hermes_cron.store.runfiles import STOP, RunFiles

CHANNEL = "hermes_cron"  # NOTIFY channel: job edits ("defs") and trigger requests ("trigger")
MARGIN = 0.25  # the supervisor stops a run this share of the lease before it ends in the database


def lease_deadline(lease_until_db: float, offset: float, lease: float) -> float:
    """When (this host's clock) a run must be stopped if its lease isn't renewed meanwhile."""
    return lease_until_db - offset - MARGIN * lease


class Cluster:
    def __init__(self, home: Home, me: ProcId, log: Any, lease: float, tick: float = 60.0):
        self.home = home
        self.tick = tick
        self.me = me
        self.log = log
        self.lease = lease
        self.node = pg_nodes.node_name(home)
        self.epoch: int | None = None
        self.offset = 0.0  # database clock minus this host's
        self.next_at = 0.0
        self.unreachable_since: float | None = None
        self.store: PgStore | None = None
        self._listen = None  # a connection LISTENing on the store's channel: edits and triggers wake us

    def listen_fd(self) -> int | None:
        """The socket to watch for NOTIFY (opened on first use; None if it can't be)."""
        if self._listen is None:
            try:
                import psycopg

                self._listen = psycopg.connect(self.home.store or "", autocommit=True, connect_timeout=5)
                self._listen.execute(f"LISTEN {CHANNEL}")
            except Exception as e:  # noqa: BLE001 - the ticks still come; only the early wake is lost
                self.log.warning("store.listen_failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
                self._listen = None
                return None
        return self._listen.fileno()

    def drain(self) -> bool:
        """Read the notifications waiting; True if any (a change or a trigger: tick now)."""
        if self._listen is None:
            return False
        try:
            return bool(list(self._listen.notifies(timeout=0.0)))
        except Exception:  # noqa: BLE001 - a broken listener: reopened at the next listen_fd()
            self.close_listener()
            return True

    def close_listener(self) -> None:
        if self._listen is not None:
            try:
                self._listen.close()
            except Exception:  # noqa: BLE001
                pass
        self._listen = None

    def open(self) -> PgStore:
        """Connect; keep this daemon's epoch across a reconnection unless it was fenced meanwhile,
        else register a new one."""
        try:
            store = PgStore(self.home, self.node, None, self.lease)
            self._measure(store)
        except HermesCronError as e:
            self._unreachable(e)
            raise
        if self.unreachable_since is not None:
            self.log.warning("store.reachable", after_s=round(time.time() - self.unreachable_since, 1))
            self.unreachable_since = None
        if self.epoch is not None and pg_nodes.still_mine(store.db, self.node, self.epoch):
            store.epoch = self.epoch
        else:
            if self.epoch is not None:  # back from an outage past its lease: a peer settled its runs
                self._fenced(store.open_runs())
            store.epoch = self.epoch = pg_nodes.register(store.db, self.node, self.me.pid, self.me.start,
                                                         __version__, self.lease, self.tick)
            self.log.info("node.registered", node=self.node, epoch=self.epoch, lease_s=self.lease,
                          clock_offset_s=round(self.offset, 3))
        self.store = store
        self.next_at = 0.0
        return store

    def _measure(self, store: PgStore) -> None:
        t0 = time.time()
        db_now = store.now()
        t1 = time.time()
        self.offset = db_now - (t0 + t1) / 2

    def wake_at(self, holding_runs: bool) -> float | None:
        """When the daemon must wake for the cluster besides its ticks: to renew the leases of the
        runs it holds, or to reconnect. Idle and connected, never: the ticks renew its heartbeat."""
        if holding_runs or self.unreachable_since is not None:
            return self.next_at or None
        return None

    def step(self, state: PgStore, dispatcher: Any) -> None:
        """At a tick: renew the leases if due, and give the dispatcher the clock offset and the
        second attempts this node claimed of lost runs (jobs marked --on-lost rerun)."""
        reruns = self.maintain(state.open_runs()) if time.time() >= self.next_at else []
        dispatcher.offset, dispatcher.lease = self.offset, self.lease
        if reruns:
            dispatcher.submit(reruns)

    def maintain(self, open_runs: list) -> list:
        """Renew, write the lease files, settle dead nodes' runs; when this node finds itself
        fenced, stop its runs and register a new epoch before anything is claimed."""
        store = self.store
        if store is None or self.epoch is None:
            return []
        now = time.time()
        try:
            self._measure(store)
            renewal = pg_nodes.renew(store.db, self.node, self.epoch, self.lease, self.offset)
        except HermesCronError as e:
            self._unreachable(e)
            raise
        if self.unreachable_since is not None:
            self.log.warning("store.reachable", after_s=round(now - self.unreachable_since, 1))
            self.unreachable_since = None
        self.next_at = now + self.lease / 3
        if renewal.fenced:
            self._fenced(open_runs)
            store.epoch = self.epoch = pg_nodes.register(store.db, self.node, self.me.pid, self.me.start,
                                                         __version__, self.lease, self.tick)
            self.log.info("node.registered", node=self.node, epoch=self.epoch, lease_s=self.lease,
                          clock_offset_s=round(self.offset, 3))
            return []
        for run in open_runs:
            until = renewal.leases.get(run.id)
            if until is not None:
                try:
                    RunFiles(self.home.run_dir(run.job, run.id)).write(
                        LEASE_FILE, f"{lease_deadline(until, self.offset, self.lease)!r}\n".encode())
                except (OSError, HermesCronError):
                    pass  # the folder is gone or not made yet: the launch's own deadline holds
        reruns = []
        for lost in pg_nodes.settle_expired(store.db, self.node, self.epoch, self.lease):
            self.log.warning("run.lost", run_id=lost.run_id, job=lost.job, node=lost.node, rerun=lost.rerun_id,
                             reason="its node stopped renewing the lease; recorded lost")
            if lost.rerun_id is not None:
                claim = _claim(lost)
                if claim is not None:
                    reruns.append(claim)
        return reruns

    def _unreachable(self, e: Exception) -> None:
        now = time.time()
        if self.unreachable_since is None:
            self.unreachable_since = now
            self.log.error("store.unreachable", error=str(e), note="claims stop; runs go on until their leases "
                           "end, then their supervisors stop them; reconnecting")
        self.next_at = now + min(self.lease / 6, 5.0)

    def _fenced(self, open_runs: list) -> None:
        """A peer settled this node's runs: stop them all now, start nothing more."""
        self.log.error("node.fenced", node=self.node, epoch=self.epoch, runs=len(open_runs),
                       note="a peer took over this node's runs (it was frozen or cut off past its lease); "
                       "stopping them, and registering a new epoch")
        for run in open_runs:
            files = RunFiles(self.home.run_dir(run.job, run.id))
            try:
                files.write(STOP, b"fenced: this node lost its lease on the shared store\n")
                files.write(LEASE_FILE, b"0\n")
            except (OSError, HermesCronError):
                pass
            sup = run.supervisor
            if sup is not None and sup.alive():
                try:
                    os.kill(sup.pid, signal.SIGTERM)
                except OSError:
                    pass


def _claim(lost: pg_nodes.Lost):  # -> engine.claims.Claim | None
    """The claim to start for a lost run's second attempt, from the job as it was claimed."""
    import json

    from hermes_cron.engine.claims import Claim
    from hermes_cron.errors import InvalidInput
    from hermes_cron.logic.jobs import Job
    from hermes_cron.logic.run import Trigger

    try:
        job = Job.from_dict(json.loads(lost.spec or "{}"))
    except (InvalidInput, ValueError, TypeError):
        return None
    assert lost.rerun_id is not None
    return Claim(lost.rerun_id, job, lost.scheduled, Trigger(lost.trigger))
