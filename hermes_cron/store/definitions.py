"""Where the job definitions live: hermes-cron-jobs.json in the home (store/jobstore.py), or the
`hc_jobs` table of the shared PostgreSQL store, so that `add`, `edit`, `list` and the rest work
from any host. One interface for both: load, a signature that changes with every edit, and a
read-modify-write under a lock.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from hermes_cron.contract.paths import Home
from hermes_cron.errors import JobNotFound
from hermes_cron.logic.jobs import Job
from hermes_cron.store import jobstore
from hermes_cron.store.jobstore import Definitions, Invalid

T = TypeVar("T")
_EDIT_LOCK = 0x68636A62  # pg_advisory_xact_lock key serialising edits ("hcjb")


@dataclass(frozen=True)
class PgSig:
    """The version of the definitions in the database: bumped by every edit."""

    version: int

    def text(self) -> str:
        return f"pg:{self.version}"


def signature(home: Home, db=None):
    if home.store is None:
        return jobstore.signature(home.jobs)
    with _connection(home, db) as d:
        return PgSig(int(d.query("SELECT value FROM hc_meta WHERE key = 'defs_version'")[0][0]))


def load(home: Home, db=None) -> Definitions:
    if home.store is None:
        return jobstore.load(home)
    with _connection(home, db) as d, d.transaction() as cur:  # the rows and their version, read together
        cur.execute("SELECT value FROM hc_meta WHERE key = 'defs_version'")
        version = int(cur.fetchone()[0])
        cur.execute("SELECT entry FROM hc_jobs ORDER BY name")
        entries = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT value FROM hc_meta WHERE key = 'defaults'")
        found = cur.fetchone()
    jobs, invalid = jobstore.read_entries(entries)
    return Definitions(jobs, PgSig(version), invalid, _defaults(found))  # type: ignore[arg-type]


def _defaults(found) -> object:
    try:
        return json.loads(found[0]) if found else {}
    except ValueError:
        return found[0]  # kept as it is; read_defaults() says it is not an object


def set_defaults(home: Home, change: Callable[[dict], dict]) -> dict:
    """Read-modify-write the defaults for all jobs (file, or the shared store's hc_meta)."""
    if home.store is None:
        return jobstore.set_defaults(home, change)
    from hermes_cron.store.pg_db import PgDatabase

    d = PgDatabase(home.store)
    try:
        with d.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_EDIT_LOCK,))
            cur.execute("SELECT value FROM hc_meta WHERE key = 'defaults'")
            current = _defaults(cur.fetchone())
            new = change(dict(current) if isinstance(current, dict) else {})
            cur.execute("INSERT INTO hc_meta (key, value) VALUES ('defaults', %s) ON CONFLICT (key) DO UPDATE "
                        "SET value = EXCLUDED.value", (json.dumps(new),))
            cur.execute("UPDATE hc_meta SET value = (value::bigint + 1)::text WHERE key = 'defs_version'")
        notify(d)
        return new
    finally:
        d.close()


def mutate(home: Home, change: Callable[[dict[str, Job]], T], after: Callable[[Definitions], None] | None = None,
           forget: str | None = None) -> T:
    """Read-modify-write the definitions (see jobstore.mutate); on the shared store, in one
    transaction serialised by an advisory lock, the version bumped."""
    if home.store is None:
        return jobstore.mutate(home, change, after, forget=forget)
    from hermes_cron.store.pg_db import PgDatabase

    d = PgDatabase(home.store)
    try:
        with d.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_EDIT_LOCK,))
            cur.execute("SELECT entry FROM hc_jobs ORDER BY name")
            current, invalid = jobstore.read_entries([row[0] for row in cur.fetchall()])
            if forget is not None and forget not in invalid and forget not in current:
                raise JobNotFound(f"no job named {forget!r}")
            jobs = dict(current)
            result = change(jobs)
            for name in current.keys() - jobs.keys():
                cur.execute("DELETE FROM hc_jobs WHERE name = %s", (name,))
            if forget is not None:
                cur.execute("DELETE FROM hc_jobs WHERE name = %s", (_entry_name(invalid.get(forget), forget),))
            for name, job in jobs.items():
                if current.get(name) is not job:
                    cur.execute("INSERT INTO hc_jobs (name, entry) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                                "SET entry = EXCLUDED.entry", (name, json.dumps(job.to_dict())))
            cur.execute("UPDATE hc_meta SET value = (value::bigint + 1)::text WHERE key = 'defs_version' "
                        "RETURNING value")
            version = int(cur.fetchone()[0])
        saved = Definitions(jobs, PgSig(version), {k: v for k, v in invalid.items() if k != forget})  # type: ignore[arg-type]
        if after is not None:
            after(saved)
        notify(d)
        return result
    finally:
        d.close()


def _entry_name(invalid: Invalid | None, key: str) -> str:
    entry = invalid.entry if invalid is not None else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) else key


def notify(d) -> None:
    """Wake every daemon on the store: the definitions changed."""
    d.execute("SELECT pg_notify('hermes_cron', 'defs')")


@contextmanager
def _connection(home: Home, db) -> Iterator:
    """The caller's connection (the daemon's, kept), or one opened for this call and closed."""
    if db is not None:
        yield db
        return
    from hermes_cron.store.pg_db import PgDatabase

    opened = PgDatabase(home.store or "")
    try:
        yield opened
    finally:
        opened.close()
