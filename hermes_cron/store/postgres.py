"""The shared store: jobs, schedule state and runs in PostgreSQL, for several hosts on one schedule
(`--store postgresql://...`). Every SQL statement on the runs and the schedule is here (the
schema in pg_db.py, the job definitions in pg_defs.py, the nodes and leases in pg_nodes.py).

Claiming is one transaction: the due schedule rows are locked (`FOR UPDATE SKIP LOCKED`, so two
hosts never decide the same job at once), the runs are inserted keyed by (job, slot, attempt)
with `ON CONFLICT DO NOTHING`, the missed and skipped slots recorded, each job advanced, and
only after the commit does anything start. A run carries its node, the node's epoch and a lease
(database clock); every change a node makes to its runs is conditioned on its node and epoch,
and the row count is checked, so a node that was fenced changes nothing.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.logic.run import Outcome, RunResult, RunState
from hermes_cron.store.rows import COLUMNS, RAN, record, states
from hermes_cron.store.base import Advance, NewRun, Request, RunRecord, SchedChange, SchedRow
from hermes_cron.store.journal import PG, TO_NOTE, Journal, drop_events, noted, record_changes
from hermes_cron.store.pg_db import PgDatabase

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM hc_runs"
_OPEN = "state <> 'done'"
_NOW = "extract(epoch FROM clock_timestamp())::float8"
OUTPUT_COPY = 64 * 1024  # the capped copy of a run's output kept in the database for `logs` anywhere


class PgStore(Journal):
    """The store in PostgreSQL, as one node (`node`, with `epoch` when it is a daemon) sees it."""

    _dialect = PG

    def __init__(self, home: Home, node: str | None = None, epoch: int | None = None, lease: float = 30.0,
                 check: bool = True):
        assert home.store is not None
        self.home = home
        self.db = PgDatabase(home.store, check)
        self.node = node
        self.epoch = epoch
        self.lease = lease

    def close(self) -> None:
        self.db.close()

    def _write(self):
        return self.db.transaction()

    def _read(self):
        return self.db.transaction()

    def idle(self) -> bool:
        return False

    def now(self) -> float:
        return self.db.now()

    @contextmanager
    def tick(self, flush_later: bool = False) -> Iterator[_PgTick]:
        with self.db.transaction() as cur:  # (a commit here is flushed by the server: flush_later changes nothing)
            yield _PgTick(self, cur)

    def flush(self) -> None:
        pass

    def data_version(self) -> None:
        return None  # (no such counter: a tick is decided under the lock, never ahead)

    def in_flight(self) -> dict[str, list[int]]:
        with self.db.transaction() as cur:
            return _PgTick(self, cur).in_flight()

    def _mine(self) -> tuple[str, tuple]:
        """The condition that a run is this node's (and this epoch's, for a daemon)."""
        if self.node is None:
            return "TRUE", ()
        if self.epoch is None:
            return "node = %s", (self.node,)
        return "node = %s AND epoch = %s", (self.node, self.epoch)

    # schedule ---------------------------------------------------------------------------

    def sched_rows(self) -> dict[str, SchedRow]:
        return _rows(self.db.query(_SCHED))

    def due(self, now: float) -> list[tuple[str, float]]:
        return [tuple(r) for r in self.db.query(_DUE, (now,))]  # type: ignore[misc]

    def next_due(self) -> float | None:
        r = self.db.query("SELECT MIN(next_run) FROM hc_sched WHERE enabled AND next_run IS NOT NULL")
        return r[0][0] if r else None

    def due_count(self, at: float) -> int:
        return self.db.query("SELECT COUNT(*) FROM hc_sched WHERE enabled AND next_run IS NOT NULL "
                             "AND next_run <= %s", (at,))[0][0]

    def upcoming(self, limit: int) -> list[tuple[str, float]]:
        return [tuple(r) for r in self.db.query(  # type: ignore[misc]
            "SELECT job, next_run FROM hc_sched WHERE enabled AND next_run IS NOT NULL ORDER BY next_run "
            "LIMIT %s", (limit,))]

    # runs: reading ----------------------------------------------------------------------

    def _runs(self, where: str, params: tuple = (), tail: str = "") -> list[RunRecord]:
        return [record(r) for r in self.db.query(f"{_SELECT} WHERE {where} {tail}", params)]

    def run(self, run_id: int) -> RunRecord | None:
        found = self._runs("id = %s", (run_id,))
        return found[0] if found else None

    def open_runs(self) -> list[RunRecord]:
        """This node's runs in flight (their folders are on this host); every node's for a
        process that is no node."""
        cond, params = ("node = %s", (self.node,)) if self.node is not None else ("TRUE", ())
        return self._runs(f"{_OPEN} AND {cond}", params, "ORDER BY id")

    def history(self, job: str | None, limit: int, outcomes: tuple[Outcome, ...] = ()) -> list[RunRecord]:
        where, params = ("job = %s", (job,)) if job is not None else ("TRUE", ())
        if outcomes:
            where += " AND status = ANY(%s)"
            params = (*params, [str(o) for o in outcomes])
        return self._runs(where, (*params, limit if limit > 0 else None), "ORDER BY id DESC LIMIT %s")

    def next_run(self, job: str) -> float | None:
        r = self.db.query("SELECT next_run FROM hc_sched WHERE job = %s AND enabled", (job,))
        return r[0][0] if r else None

    def insert_retry(self, job: str, trigger: str, scheduled: float | None, attempt: int, claimed_at: float,
                     owner: ProcId | None, spec: str | None) -> int | None:
        """A further attempt of a run's slot, claimed by this node (at most one per attempt)."""
        rows = self.db.query(
            "INSERT INTO hc_runs (job, trigger, scheduled, attempt, state, claimed_at, owner_pid, owner_start, node, "
            f"epoch, lease_until, spec, reason) VALUES (%s, %s, %s, %s, 'claimed', %s, %s, %s, %s, %s, {_NOW} + %s, "
            "%s, %s) ON CONFLICT DO NOTHING RETURNING id",
            (job, trigger, scheduled, attempt, claimed_at, owner.pid if owner else None,
             owner.start if owner else None, self.node, self.epoch, self.lease, spec, f"attempt {attempt} of its slot"))
        return int(rows[0][0]) if rows else None

    def latest_started(self, job: str) -> RunRecord | None:
        found = self._runs(f"job = %s AND state <> 'claimed' AND (status IS NULL OR {RAN})", (job,),
                           "ORDER BY id DESC LIMIT 1")
        return found[0] if found else None

    def counts(self) -> dict[tuple[str, str], int]:
        return {(job, status): int(n) for job, status, n in self.db.query("SELECT job, status, n FROM hc_counts")}

    def last_outcomes(self) -> dict[str, tuple[Outcome | None, float | None]]:
        rows = self.db.query(
            "SELECT DISTINCT ON (job) job, status, ended_at FROM hc_runs "
            f"WHERE state = 'done' AND {RAN} ORDER BY job, id DESC")
        return {job: (Outcome(status) if status else None, ended) for job, status, ended in rows}

    def output_copy(self, run_id: int) -> tuple[str | None, str | None]:
        """(the host-side path, the capped copy in the database) of a run's output."""
        r = self.db.query("SELECT node, output_copy FROM hc_runs WHERE id = %s", (run_id,))
        return (r[0][0], r[0][1]) if r else (None, None)

    # runs: their life -------------------------------------------------------------------

    def hand_over(self, handed: list[tuple[int, ProcId | None]]) -> None:
        mine, params = self._mine()
        with self.db.transaction() as cur:
            for run_id, p in handed:
                cur.execute(f"UPDATE hc_runs SET state = 'handed', supervisor_pid = %s, supervisor_start = %s "
                            f"WHERE id = %s AND {states(RunState.HANDED)} AND {mine}",
                            (p.pid if p else None, p.start if p else None, run_id, *params))

    def mark_started(self, started: list[tuple[int, float, ProcId | None]]) -> None:
        mine, params = self._mine()
        with self.db.transaction() as cur:
            for run_id, at, p in started:
                cur.execute(f"UPDATE hc_runs SET state = 'running', started_at = %s, job_pid = %s, job_start = %s "
                            f"WHERE id = %s AND {states(RunState.RUNNING)} AND {mine}",
                            (at, p.pid if p else None, p.start if p else None, run_id, *params))

    def take_over(self, run: RunRecord, owner: ProcId) -> bool:
        """This host's new daemon adopts a run of this node's, while its lease still holds (a
        run whose lease ran out is a peer's to settle, and its supervisor has stopped it)."""
        with self.db.transaction() as cur:
            cur.execute(f"UPDATE hc_runs SET owner_pid = %s, owner_start = %s, epoch = %s, "
                        f"lease_until = {_NOW} + %s WHERE id = %s AND {_OPEN} AND node = %s "
                        "AND owner_pid IS NOT DISTINCT FROM %s AND owner_start IS NOT DISTINCT FROM %s "
                        f"AND lease_until > {_NOW}",
                        (owner.pid, owner.start, self.epoch, self.lease, run.id, self.node, run.owner_pid,
                         run.owner_start))
            return cur.rowcount > 0

    def finish(self, run_id: int, result: RunResult, keep: int | None, hold: bool = False) -> tuple[bool, list[int]]:
        r = result
        copy = _read_copy(r.output) if r.output else None
        mine, params = self._mine()
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE hc_runs SET state = 'done', status = %s, ended_at = %s, started_at = COALESCE(%s, started_at), "
                "exit_code = %s, signal = %s, reason = %s, job_pid = COALESCE(%s, job_pid), "
                "job_start = COALESCE(%s, job_start), output = %s, output_bytes = %s, output_copy = %s, noted = %s "
                f"WHERE id = %s AND {states(RunState.DONE)} AND {mine} RETURNING job",
                (str(r.outcome), r.ended_at, r.started_at, r.exit_code, r.signal, r.reason, r.job_pid, r.job_start,
                 r.output, r.output_bytes, copy, noted(r.outcome, hold), run_id, *params))
            found = cur.fetchone()
            if found is None:
                return False, []
            cur.execute(COUNT, (found[0], str(r.outcome), 1))
            if not keep:
                return True, []
            cur.execute("DELETE FROM hc_runs WHERE id IN (SELECT id FROM hc_runs WHERE job = %s AND state = 'done' "
                        "AND node IS NOT DISTINCT FROM %s ORDER BY id DESC OFFSET %s) RETURNING id",
                        (found[0], self.node, keep))
            dropped = [row[0] for row in cur.fetchall()]
            drop_events(cur, PG, dropped)
            return True, dropped

    # trigger requests -------------------------------------------------------------------

    def add_request(self, job: str, now: float) -> int:
        """A trigger request; every daemon on the store is woken (NOTIFY), the first one answers."""
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO hc_requests (job, requested_at) VALUES (%s, %s) RETURNING id", (job, now))
            found = int(cur.fetchone()[0])
            cur.execute("SELECT pg_notify('hermes_cron', 'trigger')")
        return found

    def request(self, request_id: int) -> tuple[bool, int | None, str | None] | None:
        r = self.db.query("SELECT handled, run_id, error FROM hc_requests WHERE id = %s", (request_id,))
        return (bool(r[0][0]), r[0][1], r[0][2]) if r else None


COUNT = ("INSERT INTO hc_counts (job, status, n) VALUES (%s, %s, %s) "
          "ON CONFLICT (job, status) DO UPDATE SET n = hc_counts.n + EXCLUDED.n")
_SCHED = "SELECT job, fingerprint, enabled, kind, next_run, last_slot, done, boot_id FROM hc_sched"
_DUE = ("SELECT job, next_run FROM hc_sched WHERE enabled AND next_run IS NOT NULL AND next_run <= %s "
        "ORDER BY next_run")


def _rows(found: list[tuple]) -> dict[str, SchedRow]:
    return {r[0]: SchedRow(r[0], _fp_out(r[1]), bool(r[2]), r[3], r[4], r[5], bool(r[6]), r[7]) for r in found}


def fp_in(fingerprint: str) -> str:
    """A job's fingerprint (NUL-separated) as PostgreSQL text, which can't hold NUL."""
    return fingerprint.replace("\0", "\x1f")


def _fp_out(stored: str) -> str:
    return stored.replace("\x1f", "\0")


def _read_copy(path: str) -> str | None:
    """The last OUTPUT_COPY bytes of a run's output file, for `logs` on another host."""
    import os

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - OUTPUT_COPY))
            return f.read(OUTPUT_COPY).decode(errors="replace")
    except OSError:
        return None


class _PgTick:
    """The scheduler's statements inside the one claim transaction of PgStore.tick()."""

    def __init__(self, store: PgStore, cur):
        self.store = store
        self.cur = cur

    def _q(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.cur.execute(sql, params)
        return self.cur.fetchall() if self.cur.description else []

    def reconcile_sig(self) -> str | None:
        rows = self._q("SELECT value FROM hc_meta WHERE key = 'defs_sig'")
        return rows[0][0] if rows else None

    def sched_rows(self, only: set[str] | None = None) -> dict[str, SchedRow]:
        if only is None:
            return _rows(self._q(_SCHED))
        return _rows(self._q(f"{_SCHED} WHERE job = ANY(%s)", (sorted(only),)))

    def apply_sched_changes(self, changes: list[SchedChange], defs_sig: str, invalid: dict[str, str],
                            at: float | None = None) -> None:
        q = self._q
        if at is not None:
            record_changes(self.cur, PG, changes, at)
        for ch in changes:
            if ch.kind == "delete":
                q("DELETE FROM hc_sched WHERE job = %s", (ch.job,))
            elif ch.kind == "insert":
                q("INSERT INTO hc_sched (job, fingerprint, enabled, kind, next_run, done, boot_id) "
                  "VALUES (%s, %s, %s, %s, %s, false, %s) ON CONFLICT (job) DO UPDATE SET fingerprint = "
                  "EXCLUDED.fingerprint, enabled = EXCLUDED.enabled, kind = EXCLUDED.kind, next_run = "
                  "EXCLUDED.next_run, done = false",
                  (ch.job, fp_in(ch.fingerprint), ch.enabled, ch.sched_kind, ch.next_run, ch.boot_id))
            elif ch.kind == "reset":
                q("UPDATE hc_sched SET fingerprint = %s, enabled = %s, kind = %s, next_run = %s, done = false, "
                  "boot_id = COALESCE(boot_id, %s) WHERE job = %s",
                  (fp_in(ch.fingerprint), ch.enabled, ch.sched_kind, ch.next_run, ch.boot_id, ch.job))
            elif ch.kind == "enable":
                q("UPDATE hc_sched SET enabled = true, next_run = %s WHERE job = %s", (ch.next_run, ch.job))
            elif ch.kind == "set-enabled":
                q("UPDATE hc_sched SET enabled = %s WHERE job = %s", (ch.enabled, ch.job))
            else:
                raise ValueError(f"unknown schedule change {ch.kind!r}")
        for key, value in (("defs_sig", defs_sig), ("invalid_jobs", json.dumps(invalid))):
            q("INSERT INTO hc_meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = "
              "EXCLUDED.value", (key, value))

    def due(self, now: float) -> list[tuple[str, float]]:
        """The due rows, locked for this claim: another host's claim skips them."""
        return [tuple(r) for r in self._q(f"{_DUE} FOR UPDATE SKIP LOCKED", (now,))]  # type: ignore[misc]

    def data_version(self) -> None:
        return None

    def reboot_due(self, boot_id: str) -> list[str]:
        return []  # @reboot is a per-machine notion: not scheduled on the shared store

    def mark_rebooted(self, job: str, boot_id: str) -> None:
        return None

    def in_flight(self) -> dict[str, list[int]]:
        """Every node's runs in flight: the overlap policy reads the database."""
        out: dict[str, list[int]] = {}
        for job, run_id in self._q(f"SELECT job, id FROM hc_runs WHERE {_OPEN}"):
            out.setdefault(job, []).append(run_id)
        return out

    def insert_runs(self, runs: list[NewRun]) -> list[int | None]:
        """Insert the runs; each one's id, or None for a scheduled slot another claim has already
        (the key is the job, the slot and the attempt)."""
        s = self.store
        ids: list[int | None] = []
        for r in runs:
            owner = r.owner
            claimed = r.state is RunState.CLAIMED
            self.cur.execute(
                "INSERT INTO hc_runs (job, trigger, scheduled, state, status, claimed_at, ended_at, owner_pid, "
                "owner_start, node, epoch, lease_until, replaces, spec, missed_count, first_missed, reason, noted) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN {_NOW} + %s END, "
                "%s, %s, %s, %s, %s, %s) ON CONFLICT (job, scheduled, attempt) WHERE trigger = 'schedule' DO NOTHING "
                "RETURNING id",
                (r.job, str(r.trigger), r.scheduled, str(r.state), None if r.outcome is None else str(r.outcome),
                 r.claimed_at, r.claimed_at if r.state is RunState.DONE else None,
                 owner.pid if owner else None, owner.start if owner else None, s.node, s.epoch, claimed, s.lease,
                 json.dumps(list(r.replaces)) if r.replaces else None, r.spec, r.missed_count, r.first_missed,
                 r.reason, TO_NOTE if r.outcome is Outcome.MISSED else None))
            found = self.cur.fetchone()
            ids.append(int(found[0]) if found else None)
            if found and r.outcome is not None:
                self.cur.execute(COUNT, (r.job, str(r.outcome), r.missed_count or 1))
        return ids

    def advance(self, advances: list[Advance]) -> None:
        for a in advances:
            self.cur.execute("UPDATE hc_sched SET next_run = %s, last_slot = COALESCE(%s, last_slot), done = %s "
                             "WHERE job = %s", (a.next_run, a.last_slot, a.done, a.job))

    def open_requests(self) -> list[Request]:
        return [Request(*r) for r in self._q(
            "SELECT id, job, requested_at FROM hc_requests WHERE NOT handled ORDER BY id FOR UPDATE SKIP LOCKED")]

    def answer_request(self, request_id: int, run_id: int | None, error: str | None) -> None:
        self.cur.execute("UPDATE hc_requests SET handled = true, run_id = %s, error = %s WHERE id = %s",
                         (run_id, error, request_id))
