"""Nodes, epochs and leases on the shared store: who is alive, and who may act on which run.

Each daemon start takes a new epoch (a sequence) for its node. A claimed run carries the node,
the epoch and a lease on the database's clock; the daemon renews its node's heartbeat and its
runs' leases together, and a renewal that changes no node row means the node was fenced. Any
live daemon settles the runs whose lease ran out as `lost` (at most once: they are never
re-run) and fences the node that held them: that node, when it wakes, finds itself fenced,
stops its runs and claims nothing until it has registered again with a new epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import host_name
from hermes_cron.store.journal import TO_NOTE
from hermes_cron.store.postgres import COUNT

_NOW = "extract(epoch FROM clock_timestamp())::float8"


def node_name(home: Home) -> str:
    """This home's node on the shared store: $HERMES_CRON_NODE, else host:home."""
    import os

    return os.environ.get("HERMES_CRON_NODE") or f"{host_name()}:{home.root}"


def register(db, node: str, pid: int, pid_start: int, version: str, lease: float, tick: float) -> int:
    """A new epoch for `node` (which fences every earlier one of its epochs)."""
    rows = db.query(
        "INSERT INTO hc_nodes (name, host, pid, pid_start, version, epoch, started_at, heartbeat, lease_s, tick_s, "
        f"fenced) VALUES (%s, %s, %s, %s, %s, nextval('hc_epochs'), {_NOW}, {_NOW}, %s, %s, false) "
        "ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, pid_start = EXCLUDED.pid_start, "
        "version = EXCLUDED.version, epoch = EXCLUDED.epoch, started_at = EXCLUDED.started_at, "
        "heartbeat = EXCLUDED.heartbeat, lease_s = EXCLUDED.lease_s, tick_s = EXCLUDED.tick_s, fenced = false "
        "RETURNING epoch",
        (node, host_name(), pid, pid_start, version, lease, tick))
    return int(rows[0][0])


def still_mine(db, node: str, epoch: int) -> bool:
    return bool(db.query("SELECT 1 FROM hc_nodes WHERE name = %s AND epoch = %s AND NOT fenced", (node, epoch)))


@dataclass(frozen=True)
class Renewal:
    """A node's renewed heartbeat: whether it was fenced, the database's clock, its runs' leases."""

    fenced: bool
    db_now: float
    leases: dict[int, float]  # run id -> lease end (database clock)


def renew(db, node: str, epoch: int, lease: float, offset: float) -> Renewal:
    with db.transaction() as cur:
        cur.execute(f"UPDATE hc_nodes SET heartbeat = {_NOW}, offset_s = %s WHERE name = %s AND epoch = %s "
                    f"AND NOT fenced RETURNING {_NOW}", (offset, node, epoch))
        found = cur.fetchone()
        if found is None:
            return Renewal(True, 0.0, {})
        cur.execute(f"UPDATE hc_runs SET lease_until = {_NOW} + %s WHERE node = %s AND epoch = %s "
                    f"AND state <> 'done' AND lease_until > {_NOW} RETURNING id, lease_until", (lease, node, epoch))
        leases = {int(i): float(u) for i, u in cur.fetchall()}
    return Renewal(False, float(found[0]), leases)


@dataclass(frozen=True)
class Lost:
    """A run whose node stopped renewing its lease, recorded lost here, and its second attempt if any."""

    run_id: int
    job: str
    node: str | None
    rerun_id: int | None  # the new attempt this node claimed (a job marked --on-lost rerun), if any
    spec: str | None
    scheduled: float | None
    trigger: str


def settle_expired(db, node: str, epoch: int, lease: float) -> list[Lost]:
    """Record every run whose lease ran out as lost and fence the nodes that held them, once
    (another daemon's settling skips them). A run of a job marked `--on-lost rerun`, in its first
    attempt, gets a second attempt of the same slot, claimed here by this node."""
    out = []
    with db.transaction() as cur:
        cur.execute(f"SELECT id, job, node, epoch, spec, scheduled, trigger, attempt FROM hc_runs "
                    f"WHERE state <> 'done' AND lease_until < {_NOW} FOR UPDATE SKIP LOCKED")
        expired = cur.fetchall()
        for run_id, job, owner, owner_epoch, spec, scheduled, trigger, attempt in expired:
            rerun = attempt == 1 and _on_lost(spec) == "rerun"
            cur.execute(f"UPDATE hc_runs SET state = 'done', status = 'lost', ended_at = {_NOW}, noted = {TO_NOTE}, "
                        "reason = %s "
                        "WHERE id = %s AND state <> 'done'",
                        (f"its host ({owner}) stopped renewing its lease: dead, frozen or cut off from the store; "
                         + ("run again once (--on-lost rerun)" if rerun else "not run again (at most once)"), run_id))
            cur.execute("UPDATE hc_nodes SET fenced = true WHERE name = %s AND epoch = %s", (owner, owner_epoch))
            cur.execute(COUNT, (job, "lost", 1))
            rerun_id = None
            if rerun:
                cur.execute(
                    "INSERT INTO hc_runs (job, trigger, scheduled, attempt, state, claimed_at, node, epoch, "
                    f"lease_until, spec, reason) VALUES (%s, %s, %s, %s, 'claimed', {_NOW}, %s, %s, {_NOW} + %s, %s, "
                    "%s) ON CONFLICT DO NOTHING RETURNING id",
                    (job, trigger, scheduled, attempt + 1, node, epoch, lease, spec, f"attempt 2: run {run_id} was lost"))
                found = cur.fetchone()
                rerun_id = int(found[0]) if found else None
            out.append(Lost(run_id, job, owner, rerun_id, spec, scheduled, trigger))
    return out


def _on_lost(spec: str | None) -> str:
    import json

    try:
        return str(json.loads(spec or "{}").get("on_lost", "record"))
    except (ValueError, AttributeError):
        return "record"


def nodes(db) -> list[dict]:
    rows = db.query(
        f"SELECT n.name, n.host, n.pid, n.version, n.epoch, n.heartbeat, n.lease_s, n.tick_s, n.fenced, "
        f"n.offset_s, {_NOW}, (SELECT COUNT(*) FROM hc_runs r WHERE r.node = n.name AND r.epoch = n.epoch "
        "AND r.state <> 'done') FROM hc_nodes n ORDER BY n.name")
    out = []
    for name, host, pid, version, epoch, beat, lease, tick, fenced, offset, now, held in rows:
        age = now - beat if beat is not None else None
        # an idle node renews its heartbeat at its ticks only (engine/cluster.py's wake_at)
        healthy = not fenced and age is not None and age <= lease + tick
        out.append({"node": name, "host": host, "pid": pid, "version": version, "epoch": epoch,
                    "heartbeat_age_s": round(age, 1) if age is not None else None, "lease_s": lease,
                    "fenced": fenced, "healthy": healthy,
                    "clock_offset_s": round(offset, 3) if offset is not None else None, "leases_held": held})
    return out
