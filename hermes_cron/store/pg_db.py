"""The PostgreSQL store's connection and versioned schema (`hermes-cron db init`, `db migrate`).

Credentials never travel in the URL (contract/paths.py refuses one with a password): libpq
reads them from PGPASSFILE (~/.pgpass), a service file (`?service=NAME`) or the environment;
TLS settings (`sslmode`, `sslrootcert`, ...) pass through in the URL or the environment.
A daemon refuses a schema newer than it knows, and one older until `db migrate` has run.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from hermes_cron.errors import StoreError
from hermes_cron.store.journal import PG_TABLES

SCHEMA_VERSION = 2  # 2: the journal (store/journal.py)
CONNECT_TIMEOUT = 5
_LOCK_KEY = 0x68636D69  # pg_advisory_xact_lock key for schema changes ("hcmi")

_V1 = [
    "CREATE TABLE hc_meta (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE hc_jobs (name text PRIMARY KEY, entry jsonb NOT NULL)",
    "CREATE TABLE hc_sched (job text PRIMARY KEY, fingerprint text NOT NULL, enabled boolean NOT NULL, "
    "kind text NOT NULL, next_run double precision, last_slot double precision, done boolean NOT NULL DEFAULT false, "
    "boot_id text)",
    "CREATE INDEX hc_sched_due ON hc_sched (next_run) WHERE enabled AND next_run IS NOT NULL",
    "CREATE SEQUENCE hc_epochs",
    "CREATE TABLE hc_nodes (name text PRIMARY KEY, host text NOT NULL, pid integer, pid_start bigint, "
    "version text, epoch bigint NOT NULL, started_at double precision, heartbeat double precision, "
    "lease_s double precision NOT NULL, tick_s double precision NOT NULL DEFAULT 60, "
    "fenced boolean NOT NULL DEFAULT false, offset_s double precision)",
    "CREATE TABLE hc_runs (id bigserial PRIMARY KEY, job text NOT NULL, trigger text NOT NULL, "
    "scheduled double precision, attempt integer NOT NULL DEFAULT 1, state text NOT NULL, status text, "
    "claimed_at double precision NOT NULL, owner_pid integer, owner_start bigint, node text, epoch bigint, "
    "lease_until double precision, started_at double precision, ended_at double precision, "
    "supervisor_pid integer, supervisor_start bigint, job_pid integer, job_start bigint, exit_code integer, "
    "signal integer, missed_count integer, first_missed double precision, reason text, output text, "
    "output_bytes bigint, output_copy text, replaces text, spec text)",
    "CREATE UNIQUE INDEX hc_runs_slot ON hc_runs (job, scheduled, attempt) WHERE trigger = 'schedule'",
    "CREATE INDEX hc_runs_open ON hc_runs (node) WHERE state <> 'done'",
    "CREATE INDEX hc_runs_job ON hc_runs (job, id)",
    "CREATE TABLE hc_requests (id bigserial PRIMARY KEY, job text NOT NULL, requested_at double precision NOT NULL, "
    "handled boolean NOT NULL DEFAULT false, run_id bigint, error text)",
    "CREATE TABLE hc_counts (job text NOT NULL, status text NOT NULL, n bigint NOT NULL, PRIMARY KEY (job, status))",
    "INSERT INTO hc_meta (key, value) VALUES ('defs_version', '0')",
]
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: PG_TABLES}


def shown(url: str) -> str:
    """The URL as it may be printed: no user information."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        netloc = host + (f":{p.port}" if p.port else "")
        return urlunsplit((p.scheme, netloc, p.path, "", ""))
    except ValueError:
        return "postgresql://?"


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise StoreError("the PostgreSQL store needs psycopg: pip install 'hermes-cron[postgres]'") from None
    return psycopg


class PgDatabase:
    """One connection to the shared store (autocommit; transactions where they are needed)."""

    def __init__(self, url: str, check: bool = True):
        psycopg = _psycopg()
        self.url = url
        self.errors = psycopg.Error
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                        application_name="hermes-cron")
        except psycopg.Error as e:
            raise StoreError(f"can't reach the store {shown(url)}: {_first_line(e)}") from None
        if check:
            self.check_schema()

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        except self.errors as e:
            raise StoreError(f"store {shown(self.url)}: {_first_line(e)}") from None

    def execute(self, sql: str, params: Any = None) -> int:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.rowcount
        except self.errors as e:
            raise StoreError(f"store {shown(self.url)}: {_first_line(e)}") from None

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A transaction; yields a cursor. A database error rolls it back and raises StoreError."""
        try:
            with self.conn.transaction():
                with self.conn.cursor() as cur:
                    yield cur
        except self.errors as e:
            raise StoreError(f"store {shown(self.url)}: {_first_line(e)}") from None

    def now(self) -> float:
        """The database's clock: the one that decides due-ness for every host."""
        return float(self.query("SELECT extract(epoch FROM clock_timestamp())::float8")[0][0])

    # schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        rows = self.query("SELECT to_regclass('hc_meta') IS NOT NULL")
        if not rows[0][0]:
            return 0
        found = self.query("SELECT value FROM hc_meta WHERE key = 'schema_version'")
        return int(found[0][0]) if found else 0

    def check_schema(self) -> None:
        version = self.schema_version()
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            raise StoreError(f"the store {shown(self.url)} has no hermes-cron schema yet: run hermes-cron db init")
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store {shown(self.url)} has schema {version}, newer than this hermes-cron knows "
                             f"({SCHEMA_VERSION}); upgrade hermes-cron on this host")
        raise StoreError(f"the store {shown(self.url)} has schema {version}; run hermes-cron db migrate")

    def migrate(self, init: bool) -> tuple[int, int]:
        """Create (init) or bring up to date (migrate) the schema, under an advisory lock;
        returns (version before, version after)."""
        with self.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            before = self.schema_version()
            if before > SCHEMA_VERSION:
                raise StoreError(f"the store has schema {before}, newer than this hermes-cron knows "
                                 f"({SCHEMA_VERSION}); nothing changed")
            if before == 0 and not init:
                raise StoreError("the store has no hermes-cron schema yet: run hermes-cron db init")
            for version in range(before + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    cur.execute(statement)
                cur.execute("INSERT INTO hc_meta (key, value) VALUES ('schema_version', %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(version),))
            return before, SCHEMA_VERSION


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
