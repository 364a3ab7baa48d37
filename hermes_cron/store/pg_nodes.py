"""Nodes, epochs and leases on the shared store: who is alive, and who may act on which run.

Each daemon start takes a new epoch (a sequence) for its node. A claimed run carries the node,
the epoch and a lease on the database's clock; the daemon renews its node's heartbeat and its
runs' leases together, and a renewal that changes no node row means the node was fenced. Any
live daemon settles the runs whose lease ran out as `lost` (at most once: they are never
re-run) and fences the node that held them: that node, when it wakes, finds itself fenced,
stops its runs and claims nothing until it has registered again with a new epoch.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from hermes_cron.contract.paths import Home

_NOW = "extract(epoch FROM clock_timestamp())::float8"


def node_name(home: Home) -> str:
    """This home's node on the shared store: $HERMES_CRON_NODE, else host:home."""
    import os

    return os.environ.get("HERMES_CRON_NODE") or f"{socket.gethostname()}:{home.root}"


def register(db, node: str, pid: int, pid_start: int, version: str, lease: float) -> int:
    """A new epoch for `node` (which fences every earlier one of its epochs)."""
    rows = db.query(
        "INSERT INTO hc_nodes (name, host, pid, pid_start, version, epoch, started_at, heartbeat, lease_s, fenced) "
        f"VALUES (%s, %s, %s, %s, %s, nextval('hc_epochs'), {_NOW}, {_NOW}, %s, false) "
        "ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, pid_start = EXCLUDED.pid_start, "
        "version = EXCLUDED.version, epoch = EXCLUDED.epoch, started_at = EXCLUDED.started_at, "
        "heartbeat = EXCLUDED.heartbeat, lease_s = EXCLUDED.lease_s, fenced = false RETURNING epoch",
        (node, socket.gethostname(), pid, pid_start, version, lease))
    return int(rows[0][0])


def still_mine(db, node: str, epoch: int) -> bool:
    return bool(db.query("SELECT 1 FROM hc_nodes WHERE name = %s AND epoch = %s AND NOT fenced", (node, epoch)))


@dataclass(frozen=True)
class Renewal:
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


def settle_expired(db) -> list[tuple[int, str, str | None, float | None]]:
    """Record every run whose lease ran out as lost, and fence the nodes that held them; returns
    (run id, job, node, lease end) of each, once (another daemon's settling skips them)."""
    with db.transaction() as cur:
        cur.execute(f"SELECT id, job, node, epoch, lease_until FROM hc_runs WHERE state <> 'done' "
                    f"AND lease_until < {_NOW} FOR UPDATE SKIP LOCKED")
        expired = cur.fetchall()
        for run_id, job, node, epoch, until in expired:
            cur.execute(f"UPDATE hc_runs SET state = 'done', status = 'lost', ended_at = {_NOW}, reason = %s "
                        "WHERE id = %s AND state <> 'done'",
                        (f"its host ({node}) stopped renewing its lease: dead, frozen or cut off from the store; "
                         "not run again (at most once)", run_id))
            cur.execute("UPDATE hc_nodes SET fenced = true WHERE name = %s AND epoch = %s", (node, epoch))
    return [(r[0], r[1], r[2], r[4]) for r in expired]


def nodes(db) -> list[dict]:
    rows = db.query(
        f"SELECT n.name, n.host, n.pid, n.version, n.epoch, n.started_at, n.heartbeat, n.lease_s, n.fenced, "
        f"n.offset_s, {_NOW}, (SELECT COUNT(*) FROM hc_runs r WHERE r.node = n.name AND r.epoch = n.epoch "
        "AND r.state <> 'done') FROM hc_nodes n ORDER BY n.name")
    out = []
    for name, host, pid, version, epoch, started, beat, lease, fenced, offset, now, held in rows:
        age = now - beat if beat is not None else None
        out.append({"node": name, "host": host, "pid": pid, "version": version, "epoch": epoch,
                    "heartbeat_age_s": round(age, 1) if age is not None else None, "lease_s": lease,
                    "fenced": fenced, "healthy": not fenced and age is not None and age <= lease,
                    "clock_offset_s": round(offset, 3) if offset is not None else None, "leases_held": held})
    return out
