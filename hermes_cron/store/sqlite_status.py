"""What `status` reads from state.db: job counts, runs in flight, the next fire times and the
recent failures, in one read-only connection. Kept apart from store/sqlite.py so that `status`
loads no schedule or job code and starts fast."""

from __future__ import annotations

import os
import sqlite3

from hermes_cron.contract.files import check_private_file
from hermes_cron.contract.paths import Home
from hermes_cron.errors import StoreError
from hermes_cron.logic.json_lite import loads
from hermes_cron.logic.zones_lite import utc_iso as iso
from hermes_cron.store.facts import StatusFacts


def read_status_facts(home: Home, now: float) -> StatusFacts:
    try:
        check_private_file(os.stat(home.state), home.state)
        conn = sqlite3.connect(f"file:{home.state}?mode=ro", uri=True, timeout=2.0)
        try:
            return _read(conn, now)
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as e:
        raise StoreError(f"{home.state}: {e}") from None


def _read(conn: sqlite3.Connection, now: float) -> StatusFacts:
    f = StatusFacts()
    r = conn.execute("SELECT SUM(enabled = 1 AND done = 0), SUM(enabled = 0), SUM(done = 1) FROM sched").fetchone()
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('invalid_jobs', 'defs_sig')"))
    f.invalid = loads(meta.get("invalid_jobs") or "{}")
    f.reconciled_sig = meta.get("defs_sig")
    f.jobs = {"enabled": r[0] or 0, "paused": r[1] or 0, "completed": r[2] or 0, "invalid": len(f.invalid)}
    f.in_flight = [
        {"run_id": i, "job": j, "state": s, "started": iso(st), "age_s": round(max(0.0, now - (st or c)), 1)}
        for i, j, s, st, c in conn.execute(
            "SELECT id, job, state, started_at, claimed_at FROM runs WHERE state != 'done' ORDER BY id")]
    f.next = [{"job": j, "at": iso(t)} for j, t in conn.execute(
        "SELECT job, next_run FROM sched WHERE enabled = 1 AND next_run IS NOT NULL ORDER BY next_run LIMIT 5")]
    f.recent_failures = [
        {"run_id": i, "job": j, "status": s, "exit_code": e, "signal": g, "ended": iso(t), "reason": why}
        for i, j, s, e, g, t, why in conn.execute(
            "SELECT id, job, status, exit_code, signal, ended_at, reason FROM runs "
            "WHERE status IN ('failed', 'timed_out', 'interrupted') ORDER BY ended_at DESC LIMIT 5")]
    return f
