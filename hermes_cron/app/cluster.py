"""Moving a home's local store (its jobs, their schedule state and their history) into the shared
PostgreSQL store, in one command (`hermes-cron --store URL db import`)."""

from __future__ import annotations

import json
import os

from hermes_cron.app.control import lookup
from hermes_cron.contract.paths import Home
from hermes_cron.errors import DaemonError, InvalidInput, JobExists
from hermes_cron.store import jobstore
from hermes_cron.store.pg_db import PgDatabase
from hermes_cron.store.pg_nodes import node_name
from hermes_cron.store.postgres import fp_in
from hermes_cron.store.sqlite import SqliteStore

IMPORTED = ".imported"  # the local job file's new name once copied: kept, never run twice


def import_home(home: Home) -> tuple[int, int]:
    """Copy the local jobs, schedule rows and finished runs of `home` into its shared store, in
    one transaction, then rename the local job file aside (kept, so nothing is lost, and a
    local daemon doesn't run the jobs a second time); returns (jobs, runs) copied. Refused while a local daemon runs or runs are
    in flight (their supervisors report to the local store), and when a job name is taken."""
    assert home.store is not None
    local = Home(home.root)
    if lookup(local).proc is not None:
        raise DaemonError("a daemon on the local store is running: stop it first (hermes-cron stop)")
    if not os.path.exists(local.jobs):
        done = " (already imported: " + local.jobs + IMPORTED + ")" if os.path.exists(local.jobs + IMPORTED) else ""
        raise InvalidInput(f"nothing to import: {local.jobs} does not exist{done}")
    defs = jobstore.load(local)
    if defs.invalid:
        raise InvalidInput(f"fix or remove the invalid entries of {local.jobs} first: {', '.join(defs.invalid)}")
    rows, runs = {}, []
    if os.path.exists(local.state):
        store = SqliteStore(local)
        try:
            if store.open_runs():
                raise DaemonError("runs are in flight on the local store: let them end (or stop them) first")
            rows = store.sched_rows()
            runs = list(reversed(store.history(None, 0)))
        finally:
            store.close()
    db = PgDatabase(home.store)
    node = node_name(home)
    try:
        with db.transaction() as cur:
            cur.execute("SELECT name FROM hc_jobs WHERE name = ANY(%s)", (sorted(defs.jobs),))
            taken = [r[0] for r in cur.fetchall()]
            if taken:
                raise JobExists(f"the shared store already has job(s) named {', '.join(taken)}; nothing was copied")
            for name, job in defs.jobs.items():
                cur.execute("INSERT INTO hc_jobs (name, entry) VALUES (%s, %s)", (name, json.dumps(job.to_dict())))
                row = rows.get(name)
                if row is not None and row.fingerprint == job.fingerprint:
                    cur.execute("INSERT INTO hc_sched (job, fingerprint, enabled, kind, next_run, last_slot, done) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (job) DO NOTHING",
                                (name, fp_in(row.fingerprint), row.enabled, row.kind, row.next_run,
                                 row.last_slot, row.done))
            for r in runs:
                cur.execute(
                    "INSERT INTO hc_runs (job, trigger, scheduled, attempt, state, status, claimed_at, started_at, "
                    "ended_at, exit_code, signal, missed_count, first_missed, reason, output, output_bytes, node, spec) "
                    "VALUES (%s, %s, %s, 1, 'done', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (r.job, str(r.trigger), r.scheduled, None if r.outcome is None else str(r.outcome), r.claimed_at,
                     r.started_at, r.ended_at, r.exit_code, r.signal, r.missed_count, r.first_missed, r.reason,
                     r.output, r.output_bytes, node, r.spec))
            cur.execute("UPDATE hc_meta SET value = (value::bigint + 1)::text WHERE key = 'defs_version'")
            cur.execute("SELECT pg_notify('hermes_cron', 'defs')")
    finally:
        db.close()
    if os.path.exists(local.jobs):  # kept, but out of the way: a local daemon must not run them too
        os.rename(local.jobs, local.jobs + IMPORTED)
    return len(defs.jobs), len(runs)
