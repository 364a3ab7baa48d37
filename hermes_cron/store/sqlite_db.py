"""The SQLite file under the store: `$HERMES_HOME/cron/state.db` (WAL), its schema and its
upgrades, and SQLite's errors told apart by their codes. store/sqlite.py holds the queries.

A database that is corrupted, unreadable or writable by others is never replaced or
repaired here: every use fails with a StoreError naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import contextmanager
from typing import Iterator

from hermes_cron.errors import FileSystemError, LockBusy, StoreError, file_system_error
from hermes_cron.contract.files import check_private_file, fs_fault, open_dir, open_private
from hermes_cron.contract.paths import Home
from hermes_cron.store.journal import SQLITE_TABLES, SQLITE_UNNOTED_INDEX

SCHEMA_VERSION = 5  # 2: the supervisor's columns are named for it (were reaper_*); 3: counts, attempts;
# 4: the journal (store/journal.py: notification events, alert states, up-times, definition history);
# 5: the open runs' index holds their job and id (runs_open_job), so the tick reads them from it alone

# Runs ended, by job and outcome, for ever (history is pruned; counters must not go down).
SEED_COUNTS = ("INSERT OR REPLACE INTO counts (job, status, n) SELECT job, status, "
               "SUM(CASE WHEN status = 'missed' THEN COALESCE(missed_count, 1) ELSE 1 END) FROM runs "
               "WHERE state = 'done' GROUP BY job, status")
COUNT = ("INSERT INTO counts (job, status, n) VALUES (?, ?, ?) "
         "ON CONFLICT (job, status) DO UPDATE SET n = n + excluded.n")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS counts (job TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
                                   PRIMARY KEY (job, status)) WITHOUT ROWID;
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
CREATE INDEX IF NOT EXISTS sched_reboot ON sched(job) WHERE kind = 'reboot';
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
    supervisor_pid INTEGER,
    supervisor_start INTEGER,
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
    spec TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    noted INTEGER
);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job, id);
CREATE INDEX IF NOT EXISTS runs_open_job ON runs(job, id) WHERE state != 'done';
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
""" + SQLITE_TABLES + SQLITE_UNNOTED_INDEX + ";\n"

_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
_BROKEN = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_REFUSED = (3, 8, 10, 13, 14, 23)  # PERM, READONLY, IOERR, FULL, CANTOPEN, AUTH


def _translate(e: sqlite3.Error, path: str, busy_timeout: float) -> Exception:
    """The error to raise for an SQLite error: contention, a refusal of the file system (named:
    disk full, read-only, permission), or a database that is not usable (left as it is)."""
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


class Database:
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
                if version == 1:
                    for old, new in (("reaper_pid", "supervisor_pid"), ("reaper_start", "supervisor_start")):
                        c.execute(f"ALTER TABLE runs RENAME COLUMN {old} TO {new}")
                columns = {r[1] for r in c.execute("PRAGMA table_info(runs)")}
                if "noted" not in columns:  # 4: before the schema's index on it
                    c.execute("ALTER TABLE runs ADD COLUMN noted INTEGER")
                c.execute("DROP INDEX IF EXISTS runs_open")  # 5: runs_open_job instead
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                if version < 3:  # attempts of a slot; the counters start from the history kept so far
                    if "attempt" not in {r[1] for r in c.execute("PRAGMA table_info(runs)")}:
                        c.execute("ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1")
                    c.execute(SEED_COUNTS)
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def checkpoint(self) -> None:
        """Copy the WAL back into the database without waiting for readers (PASSIVE)."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None

    def flush_wal(self) -> None:
        """Make what was committed without a flush durable: fsync the write-ahead log (all of
        it: a later commit's flush covers every earlier one's, the log being written in order;
        a checkpoint flushes what it copies)."""
        wal = self.path + "-wal"
        try:
            fd = os.open(wal, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # checkpointed and gone: the database file has it, flushed by the checkpoint
        except OSError as e:
            raise file_system_error(e, f"can't flush {wal}") from None
        try:
            os.fsync(fd)
        except OSError as e:
            raise file_system_error(e, f"can't flush {wal}") from None
        finally:
            os.close(fd)

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: one writer at a time, with the bounded busy wait. Not
        `durable`: the commit is not flushed to disk (synchronous=NORMAL for it)."""
        if not durable:
            self.conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction() as c:
                yield c
        finally:
            if not durable:
                self.conn.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None
        try:
            yield self.conn
        except BaseException as e:  # roll back whatever ended the transaction, then let it go on
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(e, sqlite3.Error):
                raise _translate(e, self.path, self.busy_timeout) from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise _translate(e, self.path, self.busy_timeout) from None

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads outside a transaction, SQLite's errors translated."""
        try:
            yield self.conn
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None

    def execute(self, sql: str, params: tuple = ()) -> int:
        """Run one statement; returns the rows it changed."""
        try:
            return self.conn.execute(sql, params).rowcount
        except sqlite3.Error as e:
            raise _translate(e, self.path, self.busy_timeout) from None

