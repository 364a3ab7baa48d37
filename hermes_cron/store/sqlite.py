"""The embedded store: schedule state and run history in `$HERMES_HOME/cron/state.db`, beside
the job definitions in hermes-cron-jobs.json (store/jobstore.py). Every SQL statement of the package that
touches state.db is here (status's read-only one in store/sqlite_status.py).

hermes-cron-jobs.json says what the jobs are; this database says where each one stands: its next run,
the runs in flight and who watches them, and every run's record. The tick touches only the
rows of due jobs through an index, which keeps the tick lock short with many jobs.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from typing import Iterator

from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.logic.run import Outcome, RunResult, RunState
from hermes_cron.store.rows import COLUMNS, RAN, record, states
from hermes_cron.store.base import Advance, NewRun, Request, RunRecord, SchedChange, SchedRow
from hermes_cron.store.journal import SQLITE, TO_NOTE, Journal, drop_events, noted, record_changes
from hermes_cron.store.sqlite_db import COUNT, Database

CHECKPOINT_ROWS = 256  # idle(): checkpoint once this connection changed so many rows,
CHECKPOINT_EVERY = 3600.0  # or at least this often (seconds), if it changed any
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM runs"
_INSERT = ("INSERT INTO runs (job, trigger, scheduled, state, status, claimed_at, ended_at, owner_pid, owner_start, "
           "replaces, spec, missed_count, first_missed, reason, noted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_OPEN = "state != 'done'"


def _row(run: NewRun) -> tuple:
    owner = run.owner
    return (run.job, str(run.trigger), run.scheduled, str(run.state), None if run.outcome is None else str(run.outcome),
            run.claimed_at, run.claimed_at if run.state is RunState.DONE else None,
            owner.pid if owner else None, owner.start if owner else None,
            json.dumps(list(run.replaces)) if run.replaces else None, run.spec,
            run.missed_count, run.first_missed, run.reason, TO_NOTE if run.outcome is Outcome.MISSED else None)


class SqliteStore(Journal):
    """The store on state.db. One per process: each opens its own connection."""

    _dialect = SQLITE

    def __init__(self, home: Home, busy_timeout: float = 5.0, manual_checkpoints: bool = False):
        self.home = home
        self.db = Database(home, busy_timeout, manual_checkpoints)
        self.path = self.db.path
        self._unflushed = False  # a tick(flush_later=True) wrote, and flush() has not been called
        self._checkpoint_changes, self._checkpoint_time = 0, time.monotonic()  # idle()'s last checkpoint

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        with self.db.transaction() as c:
            yield c.cursor()

    @contextmanager
    def _write_light(self) -> Iterator[sqlite3.Cursor]:
        with self.db.transaction(durable=False) as c:
            yield c.cursor()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        with self.db.reading() as c:
            yield c.cursor()

    def close(self) -> None:
        self.db.close()

    def idle(self) -> bool:
        """The WAL checkpoint (PASSIVE), once this connection has changed CHECKPOINT_ROWS rows
        since the last one, or CHECKPOINT_EVERY has passed: each costs two flushes (and the
        next commit a third, for the log's new header), and an idle daemon writes only its
        up-time row every heartbeat (store/journal.py), which can wait. (Other connections,
        the CLI's, keep SQLite's automatic checkpoint.) True if it checkpointed."""
        changed = self.db.conn.total_changes - self._checkpoint_changes
        if changed == 0 or (changed < CHECKPOINT_ROWS and time.monotonic() - self._checkpoint_time < CHECKPOINT_EVERY):
            return False
        self.db.checkpoint()
        self._checkpoint_changes, self._checkpoint_time = self.db.conn.total_changes, time.monotonic()
        return True

    @contextmanager
    def tick(self, flush_later: bool = False) -> Iterator[_Tick]:
        """The claim transaction. With `flush_later`, its commit is not flushed to disk: the
        caller calls flush() once it has let go of the tick lock (the fsync, ~2 ms here, is
        then not lock time), and before it hands any claim over."""
        before = self.db.conn.total_changes
        try:
            with self.db.transaction(durable=not flush_later):
                yield _Tick(self.db)
        finally:
            self._unflushed = self._unflushed or (flush_later and self.db.conn.total_changes != before)

    def flush(self) -> None:
        """(Only after a tick that wrote: an idle tick costs no fsync, and no wake-up for it.)"""
        if self._unflushed:
            self.db.flush_wal()
            self._unflushed = False

    def data_version(self) -> tuple[int, int]:
        """Changes whenever a change is committed to the database, by any connection (SQLite's
        data_version) or by this one (its total_changes): equal before and under the tick
        lock, nobody wrote in between (engine/ticker.py's _Ahead and _quiet)."""
        return _Tick(self.db).data_version()

    def in_flight(self) -> dict[str, list[int]]:
        return _Tick(self.db).in_flight()

    # schedule ---------------------------------------------------------------------------

    def sched_rows(self) -> dict[str, SchedRow]:
        return _Tick(self.db).sched_rows()

    def due(self, now: float) -> list[tuple[str, float]]:
        return _Tick(self.db).due(now)

    def next_due(self) -> float | None:
        r = self.db.query("SELECT MIN(next_run) FROM sched WHERE enabled = 1 AND next_run IS NOT NULL")
        return r[0][0] if r else None

    def due_count(self, at: float) -> int:
        return self.db.query("SELECT COUNT(*) FROM sched WHERE enabled = 1 AND next_run IS NOT NULL "
                             "AND next_run <= ?", (at,))[0][0]

    def upcoming(self, limit: int) -> list[tuple[str, float]]:
        return self.db.query("SELECT job, next_run FROM sched WHERE enabled = 1 AND next_run IS NOT NULL "
                             "ORDER BY next_run LIMIT ?", (limit,))

    # runs: reading ----------------------------------------------------------------------

    def _runs(self, where: str, params: tuple = (), tail: str = "") -> list[RunRecord]:
        return [record(r) for r in self.db.query(f"{_SELECT} WHERE {where} {tail}", params)]

    def run(self, run_id: int) -> RunRecord | None:
        found = self._runs("id = ?", (run_id,))
        return found[0] if found else None

    def open_runs(self) -> list[RunRecord]:
        return self._runs(_OPEN, (), "ORDER BY id")

    def history(self, job: str | None, limit: int, outcomes: tuple[Outcome, ...] = ()) -> list[RunRecord]:
        """Newest first; `limit` 0 for all; `job` None for every job's runs; `outcomes` to keep
        only runs that ended so."""
        where, params = ("job = ?", (job,)) if job is not None else ("1 = 1", ())
        if outcomes:
            where += f" AND status IN ({', '.join('?' * len(outcomes))})"
            params = (*params, *(str(o) for o in outcomes))
        return self._runs(where, (*params, limit if limit > 0 else -1), "ORDER BY id DESC LIMIT ?")

    def next_run(self, job: str) -> float | None:
        r = self.db.query("SELECT next_run FROM sched WHERE job = ? AND enabled = 1", (job,))
        return r[0][0] if r else None

    def insert_retry(self, job: str, trigger: str, scheduled: float | None, attempt: int, claimed_at: float,
                     owner: ProcId | None, spec: str | None) -> int | None:
        """A further attempt of a run's slot, claimed now (at most one per attempt)."""
        with self.db.transaction() as c:
            if c.execute("SELECT 1 FROM runs WHERE job = ? AND scheduled IS ? AND attempt = ?",
                         (job, scheduled, attempt)).fetchone():
                return None
            cur = c.execute("INSERT INTO runs (job, trigger, scheduled, attempt, state, claimed_at, owner_pid, "
                            "owner_start, spec, reason) VALUES (?, ?, ?, ?, 'claimed', ?, ?, ?, ?, ?)",
                            (job, trigger, scheduled, attempt, claimed_at, owner.pid if owner else None,
                             owner.start if owner else None, spec, f"attempt {attempt} of its slot"))
            return int(cur.lastrowid)

    def latest_started(self, job: str) -> RunRecord | None:
        """The job's newest run that got as far as its supervisor (so it may have output)."""
        found = self._runs(f"job = ? AND state != 'claimed' AND (status IS NULL OR {RAN})", (job,),
                           "ORDER BY id DESC LIMIT 1")
        return found[0] if found else None

    def counts(self) -> dict[tuple[str, str], int]:
        """Runs ended by (job, outcome), since the store began (missed slots each counted)."""
        return {(job, status): n for job, status, n in self.db.query("SELECT job, status, n FROM counts")}

    def last_outcomes(self) -> dict[str, tuple[Outcome | None, float | None]]:
        rows = self.db.query(
            "SELECT r.job, r.status, r.ended_at FROM runs r JOIN "
            f"(SELECT job, MAX(id) AS id FROM runs WHERE state = 'done' AND {RAN} GROUP BY job) m ON r.id = m.id")
        return {job: (Outcome(status) if status else None, ended) for job, status, ended in rows}

    # runs: their life (every change is conditioned on logic/run.py's transitions) -------

    def hand_over(self, handed: list[tuple[int, ProcId | None]]) -> None:
        """CLAIMED -> HANDED: the runs were given to these supervisors (None: one not known)."""
        with self.db.transaction() as c:
            c.executemany(f"UPDATE runs SET state = 'handed', supervisor_pid = ?, supervisor_start = ? "
                          f"WHERE id = ? AND {states(RunState.HANDED)}",
                          [(p.pid if p else None, p.start if p else None, run_id) for run_id, p in handed])

    def mark_started(self, started: list[tuple[int, float, ProcId | None]]) -> None:
        """-> RUNNING, as the supervisor reported: when the job really started, and its pid."""
        with self.db.transaction() as c:
            c.executemany(f"UPDATE runs SET state = 'running', started_at = ?, job_pid = ?, job_start = ? "
                          f"WHERE id = ? AND {states(RunState.RUNNING)}",
                          [(at, p.pid if p else None, p.start if p else None, run_id) for run_id, at, p in started])

    def take_over(self, run: RunRecord, owner: ProcId) -> bool:
        """Make `owner` the run's owner, unless another process changed the owner first."""
        with self.db.transaction() as c:
            cur = c.execute(f"UPDATE runs SET owner_pid = ?, owner_start = ? WHERE id = ? AND {_OPEN} "
                            "AND owner_pid IS ? AND owner_start IS ?",
                            (owner.pid, owner.start, run.id, run.owner_pid, run.owner_start))
            return cur.rowcount > 0

    def finish(self, run_id: int, result: RunResult, keep: int | None, hold: bool = False) -> tuple[bool, list[int]]:
        """-> DONE with `result`, to be noted for notifications (`hold`: once its retry is decided,
        release_note), and drop all but the newest `keep` finished runs of its job, in one
        transaction. Returns (whether this call ended the run, the dropped run ids)."""
        r = result
        with self.db.transaction() as c:
            cur = c.execute(
                "UPDATE runs SET state = 'done', status = ?, ended_at = ?, started_at = COALESCE(?, started_at), "
                "exit_code = ?, signal = ?, reason = ?, job_pid = COALESCE(?, job_pid), "
                "job_start = COALESCE(?, job_start), output = ?, output_bytes = ?, noted = ? "
                f"WHERE id = ? AND {states(RunState.DONE)}",
                (str(r.outcome), r.ended_at, r.started_at, r.exit_code, r.signal, r.reason, r.job_pid, r.job_start,
                 r.output, r.output_bytes, noted(r.outcome, hold), run_id))
            if cur.rowcount == 0:
                return False, []
            job = c.execute("SELECT job FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            c.execute(COUNT, (job, str(r.outcome), 1))
            if not keep:
                return True, []
            ids = [row[0] for row in c.execute(
                "SELECT id FROM runs WHERE job = ? AND state = 'done' ORDER BY id DESC LIMIT -1 OFFSET ?", (job, keep))]
            c.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])
            drop_events(c.cursor(), SQLITE, ids)
            return True, ids

    # trigger requests -------------------------------------------------------------------

    def add_request(self, job: str, now: float) -> int:
        with self.db.transaction() as c:
            return int(c.execute("INSERT INTO requests(job, requested_at) VALUES (?, ?)", (job, now)).lastrowid)

    def request(self, request_id: int) -> tuple[bool, int | None, str | None] | None:
        """(answered, run id, error) for a trigger request."""
        r = self.db.query("SELECT handled, run_id, error FROM requests WHERE id = ?", (request_id,))
        return (bool(r[0][0]), r[0][1], r[0][2]) if r else None


class _Tick:
    """The scheduler's statements, inside the one transaction SqliteStore.tick() opens."""

    def __init__(self, db: Database):
        self.db = db
        self.c = db.conn

    def reconcile_sig(self) -> str | None:
        rows = self.db.query("SELECT value FROM meta WHERE key = 'defs_sig'")
        return rows[0][0] if rows else None

    def sched_rows(self, only: set[str] | None = None) -> dict[str, SchedRow]:
        sql = "SELECT job, fingerprint, enabled, kind, next_run, last_slot, done, boot_id FROM sched"
        if only is None:
            found = self.db.query(sql)
        else:
            names = sorted(only)
            found = [r for i in range(0, len(names), 500) for r in self.db.query(
                f"{sql} WHERE job IN ({','.join('?' * len(names[i:i + 500]))})", tuple(names[i:i + 500]))]
        return {r[0]: SchedRow(r[0], r[1], bool(r[2]), r[3], r[4], r[5], bool(r[6]), r[7]) for r in found}

    def apply_sched_changes(self, changes: list[SchedChange], defs_sig: str, invalid: dict[str, str],
                            at: float | None = None) -> None:
        c = self.c
        if at is not None:
            record_changes(c.cursor(), SQLITE, changes, at)
        for ch in changes:
            if ch.kind == "delete":
                c.execute("DELETE FROM sched WHERE job = ?", (ch.job,))
            elif ch.kind == "insert":
                c.execute("INSERT INTO sched(job, fingerprint, enabled, kind, next_run, done, boot_id) "
                          "VALUES (?, ?, ?, ?, ?, 0, ?)", (ch.job, ch.fingerprint, int(ch.enabled), ch.sched_kind,
                                                           ch.next_run, ch.boot_id))
            elif ch.kind == "reset":
                c.execute("UPDATE sched SET fingerprint = ?, enabled = ?, kind = ?, next_run = ?, done = 0, "
                          "boot_id = COALESCE(boot_id, ?) WHERE job = ?",
                          (ch.fingerprint, int(ch.enabled), ch.sched_kind, ch.next_run, ch.boot_id, ch.job))
            elif ch.kind == "enable":
                c.execute("UPDATE sched SET enabled = 1, next_run = ? WHERE job = ?", (ch.next_run, ch.job))
            elif ch.kind == "set-enabled":
                c.execute("UPDATE sched SET enabled = ? WHERE job = ?", (int(ch.enabled), ch.job))
            else:
                raise ValueError(f"unknown schedule change {ch.kind!r}")
        c.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                      [("defs_sig", defs_sig), ("invalid_jobs", json.dumps(invalid))])

    def due(self, now: float) -> list[tuple[str, float]]:
        return self.db.query("SELECT job, next_run FROM sched WHERE enabled = 1 AND next_run IS NOT NULL "
                             "AND next_run <= ? ORDER BY next_run", (now,))

    def data_version(self) -> tuple[int, int]:
        return int(self.db.query("PRAGMA data_version")[0][0]), self.c.total_changes

    def reboot_due(self, boot_id: str) -> list[str]:
        return [r[0] for r in self.db.query(
            "SELECT job FROM sched WHERE kind = 'reboot' AND enabled = 1 AND (boot_id IS NULL OR boot_id != ?)",
            (boot_id,))]

    def mark_rebooted(self, job: str, boot_id: str) -> None:
        self.c.execute("UPDATE sched SET boot_id = ? WHERE job = ?", (boot_id, job))

    def in_flight(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for job, run_id in self.db.query(f"SELECT job, id FROM runs WHERE {_OPEN}"):
            out.setdefault(job, []).append(run_id)
        return out

    def insert_runs(self, runs: list[NewRun]) -> list[int]:
        """Insert the runs in one statement; their ids, in order (consecutive: AUTOINCREMENT,
        inside the one write transaction)."""
        if not runs:
            return []
        self.c.executemany(_INSERT, [_row(r) for r in runs])
        done = [(r.job, str(r.outcome), r.missed_count or 1) for r in runs if r.outcome is not None]
        if done:
            self.c.executemany(COUNT, done)
        last = int(self.c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()[0])
        return list(range(last - len(runs) + 1, last + 1))

    def advance(self, advances: list[Advance]) -> None:
        self.c.executemany("UPDATE sched SET next_run = ?, last_slot = COALESCE(?, last_slot), done = ? WHERE job = ?",
                           [(a.next_run, a.last_slot, int(a.done), a.job) for a in advances])

    def open_requests(self) -> list[Request]:
        return [Request(*r) for r in self.db.query(
            "SELECT id, job, requested_at FROM requests WHERE handled = 0 ORDER BY id")]

    def answer_request(self, request_id: int, run_id: int | None, error: str | None) -> None:
        self.c.execute("UPDATE requests SET handled = 1, run_id = ?, error = ? WHERE id = ?",
                       (run_id, error, request_id))
