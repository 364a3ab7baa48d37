"""What `status` reads from the shared PostgreSQL store: the same facts as from state.db
(store/sqlite_status.py), and for `status --cluster` the nodes, their health, the leases they
hold, the clock offsets, and who ran what."""

from __future__ import annotations

import json

from hermes_cron.contract.paths import Home
from hermes_cron.logic.zones_lite import utc_iso as iso
from hermes_cron.store.facts import StatusFacts


def read_status_facts(home: Home, now: float) -> StatusFacts:
    from hermes_cron.store.pg_db import PgDatabase

    db = PgDatabase(home.store or "")
    try:
        return _read(db, now)
    finally:
        db.close()


def _read(db, now: float) -> StatusFacts:
    f = StatusFacts()
    r = db.query("SELECT COUNT(*) FILTER (WHERE enabled AND NOT done), COUNT(*) FILTER (WHERE NOT enabled), "
                 "COUNT(*) FILTER (WHERE done) FROM hc_sched")[0]
    meta = dict(db.query("SELECT key, value FROM hc_meta WHERE key IN ('invalid_jobs', 'defs_sig')"))
    f.invalid = json.loads(meta.get("invalid_jobs") or "{}")
    f.reconciled_sig = meta.get("defs_sig")
    f.jobs = {"enabled": r[0] or 0, "paused": r[1] or 0, "completed": r[2] or 0, "invalid": len(f.invalid)}
    f.in_flight = [
        {"run_id": i, "job": j, "state": s, "started": iso(st), "age_s": round(max(0.0, now - (st or c)), 1),
         "node": n}
        for i, j, s, st, c, n in db.query(
            "SELECT id, job, state, started_at, claimed_at, node FROM hc_runs WHERE state <> 'done' ORDER BY id")]
    f.next = [{"job": j, "at": iso(t)} for j, t in db.query(
        "SELECT job, next_run FROM hc_sched WHERE enabled AND next_run IS NOT NULL ORDER BY next_run LIMIT 5")]
    f.recent_failures = [
        {"run_id": i, "job": j, "status": s, "exit_code": e, "signal": g, "ended": iso(t), "reason": why}
        for i, j, s, e, g, t, why in db.query(
            "SELECT id, job, status, exit_code, signal, ended_at, reason FROM hc_runs "
            "WHERE status IN ('failed', 'timed_out', 'interrupted', 'lost') ORDER BY ended_at DESC LIMIT 5")]
    return f


def cluster(home: Home, recent: int = 10) -> dict:
    """`status --cluster`: the nodes, the leases they hold, and the latest runs with their node."""
    from hermes_cron.store.pg_db import PgDatabase, shown
    from hermes_cron.store.pg_nodes import nodes

    db = PgDatabase(home.store or "")
    try:
        runs = [{"run_id": i, "job": j, "node": n, "status": s or st, "scheduled": iso(sc), "ended": iso(e)}
                for i, j, n, s, st, sc, e in db.query(
                    "SELECT id, job, node, status, state, scheduled, ended_at FROM hc_runs ORDER BY id DESC LIMIT %s",
                    (recent,))]
        return {"store": shown(home.store or ""), "nodes": nodes(db), "recent_runs": runs}
    finally:
        db.close()
