"""Schedule state and run history: `$HERMES_HOME/cron/state.db` (SQLite, WAL).

jobs.json says what the jobs are; this database says where each one stands: its next run,
the runs in flight and who watches them, and every run's record. The tick touches only the
rows of due jobs through an index, which keeps the tick lock short with many jobs.

A database that is corrupted, unreadable or writable by others is never replaced or
repaired here: every use fails with a StoreError naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from hermes_cron.errors import InvalidInput, LockBusy, StoreError, file_system_error
from hermes_cron.contract.files import check_private_file, open_private
from hermes_cron.logic.jobs import Job
from hermes_cron.contract.paths import Home

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sched (
    job TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    kind TEXT NOT NULL,
    next_run REAL,
    last_slot REAL,
    done INTEGER NOT NULL DEFAULT 0,
    boot_id TEXT
);
CREATE INDEX IF NOT EXISTS sched_due ON sched(next_run) WHERE enabled = 1 AND next_run IS NOT NULL;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled REAL,
    state TEXT NOT NULL,
    status TEXT,
    claimed_at REAL NOT NULL,
    owner_pid INTEGER,
    owner_start INTEGER,
    started_at REAL,
    ended_at REAL,
    reaper_pid INTEGER,
    reaper_start INTEGER,
    job_pid INTEGER,
    job_start INTEGER,
    exit_code INTEGER,
    signal INTEGER,
    missed_count INTEGER,
    first_missed REAL,
    reason TEXT,
    output TEXT,
    output_bytes INTEGER,
    replaces TEXT,
    spec TEXT
);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job, id);
CREATE INDEX IF NOT EXISTS runs_open ON runs(state) WHERE state != 'done';
CREATE INDEX IF NOT EXISTS runs_failed ON runs(ended_at) WHERE status IN ('failed', 'timed_out', 'interrupted');
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    requested_at REAL NOT NULL,
    run_id INTEGER,
    error TEXT,
    handled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_open ON requests(id) WHERE handled = 0;
"""

_RUN_COLUMNS = (
    "id job trigger scheduled state status claimed_at owner_pid owner_start started_at ended_at "
    "reaper_pid reaper_start job_pid job_start exit_code signal missed_count first_missed reason "
    "output output_bytes replaces spec"
).split()


RUN_INSERT_COLUMNS = ("job", "trigger", "scheduled", "state", "status", "claimed_at", "ended_at", "owner_pid",
                      "owner_start", "replaces", "spec", "missed_count", "first_missed", "reason")


@dataclass(frozen=True)
class Run:
    id: int
    job: str
    trigger: str
    scheduled: float | None
    state: str
    status: str | None
    claimed_at: float
    owner_pid: int | None
    owner_start: int | None
    started_at: float | None
    ended_at: float | None
    reaper_pid: int | None
    reaper_start: int | None
    job_pid: int | None
    job_start: int | None
    exit_code: int | None
    signal: int | None
    missed_count: int | None
    first_missed: float | None
    reason: str | None
    output: str | None
    output_bytes: int | None
    replaces: str | None
    spec: str | None

    @property
    def job_spec(self) -> Job | None:
        """The job as it was when this run was claimed; None if the run has no copy, or one that
        is not valid any more (a newer release's limits)."""
        if not self.spec:
            return None
        try:
            return Job.from_dict(json.loads(self.spec))
        except (InvalidInput, ValueError, RecursionError):
            return None

    @property
    def replaced_ids(self) -> tuple[int, ...]:
        return tuple(json.loads(self.replaces)) if self.replaces else ()

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        from hermes_cron.logic.zones_lite import utc_iso

        d = {k: getattr(self, k) for k in _RUN_COLUMNS if k not in ("spec", "replaces", "owner_start",
                                                                  "reaper_start", "job_start")}
        for key in ("scheduled", "claimed_at", "started_at", "ended_at", "first_missed"):
            d[key] = utc_iso(d[key])
        d["duration_s"] = None if self.duration is None else round(self.duration, 3)
        d["replaces"] = list(self.replaced_ids)
        return d


@dataclass(frozen=True)
class SchedRow:
    job: str
    fingerprint: str
    enabled: bool
    kind: str
    next_run: float | None
    last_slot: float | None
    done: bool
    boot_id: str | None


_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
_BROKEN = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_REFUSED = (3, 8, 10, 13, 14, 23)  # PERM, READONLY, IOERR, FULL, CANTOPEN, AUTH


def _translate(e: sqlite3.Error, path: str, busy_timeout: float) -> Exception:
    """The error to raise for an SQLite error: contention, a refusal of the file system (named:
    disk full, read-only, permission), or a database that is not usable (left as it is)."""
    from hermes_cron.errors import FileSystemError
    from hermes_cron.contract.files import fs_fault

    code = (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(e)
    if code in _BUSY:
        return LockBusy(f"the state database ({path}) stayed locked for more than {busy_timeout:g} s")
    if code in _REFUSED:
        fault = fs_fault(path)
        if fault is None and code == 13:
            fault = "the disk is full (ENOSPC)"
        if fault is None and code in (3, 8, 14, 23) and not os.access(os.path.dirname(path), os.W_OK):
            fault = "permission denied (EACCES)"
        if fault is not None:
            return FileSystemError(f"can't write {path}: {fault}")
        return StoreError(f"can't use {path}: {text} (check its owner, its mode and the disk)")
    if code in _BROKEN:
        return StoreError(f"{path} is not a usable state database ({text}); it is left as it is")
    if isinstance(e, sqlite3.OperationalError):
        return StoreError(f"{path}: {text}")
    return StoreError(f"{path}: {text}; it is left as it is")


class State:
    """A connection to state.db. Not shared across processes: each opens its own."""

    def __init__(self, home: Home, busy_timeout: float = 5.0, manual_checkpoints: bool = False):
        self.home = home
        self.manual_checkpoints = manual_checkpoints
        self.path = home.state
        self.busy_timeout = busy_timeout
        home.ensure()
        self._check_file()
        try:
            self.conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise _translate(e, self.path, busy_timeout) from None
        self.conn.row_factory = None
        try:
            self._setup()
        except sqlite3.Error as e:
            self.conn.close()
            raise _translate(e, self.path, busy_timeout) from None
        except BaseException:  # never leave the connection open on the way out
            self.conn.close()
            raise

    def _check_file(self) -> None:
        """Refuse a state.db that is a symlink, not ours, open to others or empty; create a
        missing one whole (schema included) so that an empty file is never one of ours."""
        from hermes_cron.contract.files import open_dir

        folder, name = os.path.split(self.path)
        try:
            dfd = open_dir(folder, 1)
        except OSError as e:
            raise file_system_error(e, f"can't open {folder}") from None
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                self._create(dfd, name)
                return
            except OSError as e:
                raise file_system_error(e, f"can't read {self.path}") from None
            if stat.S_ISLNK(st.st_mode):
                raise StoreError(f"{self.path} is a symbolic link; refusing to follow it")
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(f"{self.path} is not a regular file; it is left as it is")
            check_private_file(st, self.path)
            if st.st_size == 0:
                raise StoreError(f"{self.path} is empty (0 bytes), so its history is gone or was never "
                                 "there; it is left as it is (move it away to start a new one)")
            if not os.access(self.path, os.R_OK | os.W_OK):
                from hermes_cron.errors import FileSystemError
                from hermes_cron.contract.files import fs_fault

                raise FileSystemError(f"can't use {self.path}: {fs_fault(self.path) or 'permission denied (EACCES)'}")
        finally:
            os.close(dfd)

    def _create(self, dfd: int, name: str) -> None:
        """Build a new database beside its final name, then link it into place: readers see no
        database or a whole one, and a crash leaves at most a temporary file."""
        tmp = f".{name}.{os.urandom(6).hex()}.new"
        tmp_path = os.path.join(os.path.dirname(self.path), tmp)
        try:
            os.close(open_private(dfd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            conn = sqlite3.connect(tmp_path, isolation_level=None)
            try:
                conn.executescript(f"BEGIN; {_SCHEMA}; PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            finally:
                conn.close()
            try:
                os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except FileExistsError:
                pass  # another process made it first: use theirs
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None
        except OSError as e:
            raise file_system_error(e, f"can't create {self.path}") from None
        finally:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass

    def _setup(self) -> None:
        c = self.conn
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer hermes-cron (schema {version}; this one reads "
                f"{SCHEMA_VERSION}); it is left as it is"
            )
        if c.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        if self.manual_checkpoints:
            # The daemon checkpoints the WAL itself, when nothing is due (checkpoint()), so a
            # commit under the tick lock never pays for copying the WAL into the database.
            c.execute("PRAGMA wal_autocheckpoint=0")
        if version < SCHEMA_VERSION:
            with self.transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def checkpoint(self) -> None:
        """Copy the WAL back into the database without waiting for readers (PASSIVE)."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: one writer at a time, with the bounded busy wait."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None
        try:
            yield self.conn
        except BaseException:  # roll back whatever ended the transaction, then let it go on
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise _translate(e, self.path, self.busy_timeout) from None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None

    # meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # schedule rows ----------------------------------------------------------------------

    def sched_rows(self) -> dict[str, SchedRow]:
        rows = self.query(
            "SELECT job, fingerprint, enabled, kind, next_run, last_slot, done, boot_id FROM sched"
        )
        return {r[0]: SchedRow(r[0], r[1], bool(r[2]), r[3], r[4], r[5], bool(r[6]), r[7]) for r in rows}

    def due(self, now: float) -> list[tuple[str, float]]:
        return self.query(
            "SELECT job, next_run FROM sched WHERE enabled = 1 AND next_run IS NOT NULL AND next_run <= ? "
            "ORDER BY next_run",
            (now,),
        )

    def reboot_due(self, boot_id: str) -> list[str]:
        return [
            r[0]
            for r in self.query(
                "SELECT job FROM sched WHERE kind = 'reboot' AND enabled = 1 AND (boot_id IS NULL OR boot_id != ?)",
                (boot_id,),
            )
        ]

    def next_due(self) -> float | None:
        r = self.query("SELECT MIN(next_run) FROM sched WHERE enabled = 1 AND next_run IS NOT NULL")
        return r[0][0] if r else None

    def due_count(self, at: float) -> int:
        return self.query("SELECT COUNT(*) FROM sched WHERE enabled = 1 AND next_run IS NOT NULL AND next_run <= ?",
                          (at,))[0][0]

    def upcoming(self, limit: int) -> list[tuple[str, float]]:
        return self.query(
            "SELECT job, next_run FROM sched WHERE enabled = 1 AND next_run IS NOT NULL ORDER BY next_run LIMIT ?",
            (limit,),
        )

    def advance_many(self, rows: list[tuple]) -> None:
        """(next_run, last_slot, done, job) for each job: its schedule moves on."""
        self.conn.executemany(
            "UPDATE sched SET next_run = ?, last_slot = COALESCE(?, last_slot), done = ? WHERE job = ?", rows)

    def mark_rebooted(self, job: str, boot_id: str) -> None:
        self.conn.execute("UPDATE sched SET boot_id = ? WHERE job = ?", (boot_id, job))

    # runs -------------------------------------------------------------------------------

    def insert_run(self, **values: Any) -> int:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur = self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(values.values()))
        return int(cur.lastrowid)

    def insert_runs(self, rows: list[tuple]) -> int:
        """Insert runs (values in RUN_INSERT_COLUMNS order) in one statement; returns the first
        id. Inside a write transaction the ids are consecutive (AUTOINCREMENT, one writer)."""
        marks = ", ".join("?" for _ in RUN_INSERT_COLUMNS)
        self.conn.executemany(f"INSERT INTO runs ({', '.join(RUN_INSERT_COLUMNS)}) VALUES ({marks})", rows)
        last = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()[0]
        return int(last) - len(rows) + 1

    def update_run(self, run_id: int, **values: Any) -> bool:
        """Update a run that is not done yet; False if it is (or is gone)."""
        sets = ", ".join(f"{k} = ?" for k in values)
        cur = self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ? AND state != 'done'", (*values.values(), run_id))
        return cur.rowcount > 0

    def _runs(self, where: str, params: tuple = (), tail: str = "") -> list[Run]:
        rows = self.query(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE {where} {tail}", params)
        return [Run(*r) for r in rows]

    def run(self, run_id: int) -> Run | None:
        found = self._runs("id = ?", (run_id,))
        return found[0] if found else None

    def open_run_ids(self) -> list[tuple[str, int]]:
        return self.query("SELECT job, id FROM runs WHERE state != 'done'")

    def open_runs(self) -> list[Run]:
        return self._runs("state != 'done'", (), "ORDER BY id")

    def history(self, job: str, limit: int) -> list[Run]:
        return self._runs("job = ?", (job, limit if limit > 0 else -1), "ORDER BY id DESC LIMIT ?")

    def latest_started(self, job: str) -> Run | None:
        """The job's newest run that got as far as starting (so it has an output file)."""
        found = self._runs("job = ? AND state != 'claimed' AND status IS NOT 'skipped' AND status IS NOT 'missed'",
                           (job,), "ORDER BY id DESC LIMIT 1")
        return found[0] if found else None

    def last_statuses(self) -> dict[str, tuple[str | None, float | None]]:
        rows = self.query(
            "SELECT r.job, r.status, r.ended_at FROM runs r JOIN "
            "(SELECT job, MAX(id) AS id FROM runs WHERE state = 'done' AND status NOT IN ('skipped', 'missed') "
            "GROUP BY job) m ON r.id = m.id"
        )
        return {job: (status, ended) for job, status, ended in rows}

    def prune(self, job: str, keep: int) -> list[int]:
        """Drop all but the newest `keep` finished runs of `job`; return the dropped ids."""
        rows = self.query(
            "SELECT id FROM runs WHERE job = ? AND state = 'done' ORDER BY id DESC LIMIT -1 OFFSET ?",
            (job, keep),
        )
        ids = [r[0] for r in rows]
        if ids:
            self.conn.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
        return ids

    # trigger requests -------------------------------------------------------------------

    def add_request(self, job: str, now: float) -> int:
        with self.transaction():
            cur = self.conn.execute("INSERT INTO requests(job, requested_at) VALUES (?, ?)", (job, now))
            return int(cur.lastrowid)

    def open_requests(self) -> list[tuple[int, str, float]]:
        return self.query("SELECT id, job, requested_at FROM requests WHERE handled = 0 ORDER BY id")

    def answer_request(self, request_id: int, run_id: int | None, error: str | None) -> None:
        self.conn.execute(
            "UPDATE requests SET handled = 1, run_id = ?, error = ? WHERE id = ?", (run_id, error, request_id)
        )

    def request(self, request_id: int) -> tuple[int, int | None, str | None] | None:
        r = self.query("SELECT handled, run_id, error FROM requests WHERE id = ?", (request_id,))
        return r[0] if r else None
