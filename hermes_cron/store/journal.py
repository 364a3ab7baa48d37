"""Durable facts kept beside the runs, in the same SQL for both stores (SQLite's tables, and
PostgreSQL's with the `hc_` prefix):

- `events`: one row per notification to send (a hook command or a webhook) for a run that
  ended, with the payload frozen when the event was decided, and the hook's own outcome;
- `alert_state`: each job's last known state (ok or failing), for "recovered" and `--notify-on
  change`;
- `daemons`: when each daemon (each node, on a shared store) was up: start, last tick seen, stop,
  or crash (found by the next start);
- `job_history`: each change of a job's schedule or paused state, as the ticks applied it.

Every function takes a cursor inside the caller's transaction (sqlite3's connection, or a psycopg
cursor) and a Dialect. The tables are bounded: events go with their run, the up-times and the
definition history keep their newest rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.store.base import RunRecord
from hermes_cron.store.rows import COLUMNS, record

KEEP_DAEMONS = 1000  # up-time rows kept (per store)
KEEP_HISTORY = 50  # definition changes kept per job
KEEP_HISTORY_ALL = 20000  # ... and in all
NOTE_BATCH = 500
HELD_FOR = 60.0  # a run held for its retry decision is noted anyway this long after it ended

# noted: NULL nothing to do (old, open or skipped runs; noted already), 0 to note, 2 held while the
# daemon decides on a retry (a crash in between leaves it to the HELD_FOR rule).
TO_NOTE, HELD = 0, 2
RETRIED = ("failed", "timed_out")  # the outcomes --retries tries again



def noted(outcome: Any, hold: bool) -> int | None:
    """A finished run's `noted`: a skipped one tells nobody anything."""
    return None if str(outcome) == "skipped" else HELD if hold else TO_NOTE


SQLITE_TABLES = """
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, job TEXT NOT NULL,
    event TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, payload TEXT NOT NULL, timeout REAL NOT NULL,
    created_at REAL NOT NULL, state TEXT NOT NULL, runner_host TEXT, runner_pid INTEGER, runner_start INTEGER,
    started_at REAL,
    ended_at REAL, status TEXT, exit_code INTEGER, detail TEXT);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
CREATE INDEX IF NOT EXISTS events_open ON events(id) WHERE state != 'done';
CREATE TABLE IF NOT EXISTS alert_state (job TEXT PRIMARY KEY, state TEXT NOT NULL, since REAL NOT NULL,
    run_id INTEGER);
CREATE TABLE IF NOT EXISTS daemons (id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, pid INTEGER NOT NULL,
    pid_start INTEGER, started_at REAL NOT NULL, seen_at REAL NOT NULL, stopped_at REAL, how TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_history (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, at REAL NOT NULL,
    change TEXT NOT NULL, fingerprint TEXT, enabled INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS job_history_job ON job_history(job, id);
"""

PG_TABLES = [
    "CREATE TABLE hc_events (id bigserial PRIMARY KEY, run_id bigint NOT NULL, job text NOT NULL, event text NOT NULL, "
    "kind text NOT NULL, target text NOT NULL, payload text NOT NULL, timeout double precision NOT NULL, "
    "created_at double precision NOT NULL, state text NOT NULL, runner_host text, runner_pid integer, "
    "runner_start bigint, "
    "started_at double precision, ended_at double precision, status text, exit_code integer, detail text)",
    "CREATE INDEX hc_events_run ON hc_events (run_id)",
    "CREATE INDEX hc_events_open ON hc_events (id) WHERE state <> 'done'",
    "CREATE TABLE hc_alert_state (job text PRIMARY KEY, state text NOT NULL, since double precision NOT NULL, "
    "run_id bigint)",
    "CREATE TABLE hc_daemons (id bigserial PRIMARY KEY, node text NOT NULL, pid integer NOT NULL, pid_start bigint, "
    "started_at double precision NOT NULL, seen_at double precision NOT NULL, stopped_at double precision, "
    "how text NOT NULL)",
    "CREATE TABLE hc_job_history (id bigserial PRIMARY KEY, job text NOT NULL, at double precision NOT NULL, "
    "change text NOT NULL, fingerprint text, enabled integer NOT NULL)",
    "CREATE INDEX hc_job_history_job ON hc_job_history (job, id)",
    "ALTER TABLE hc_runs ADD COLUMN noted smallint",
    "CREATE INDEX hc_runs_unnoted ON hc_runs (ended_at, id) WHERE noted IS NOT NULL",
]
SQLITE_UNNOTED_INDEX = "CREATE INDEX IF NOT EXISTS runs_unnoted ON runs(ended_at, id) WHERE noted IS NOT NULL"


class Dialect:
    """The few differences: table prefix, placeholders, row locking, and NULL-safe equality."""

    def __init__(self, pg: bool):
        self.pg = pg
        p = "hc_" if pg else ""
        self.names = {"runs": f"{p}runs", "events": f"{p}events", "alert_state": f"{p}alert_state",
                      "daemons": f"{p}daemons", "job_history": f"{p}job_history"}
        self.lock_rows = " FOR UPDATE SKIP LOCKED" if pg else ""
        self._cache: dict[str, str] = {}

    def __call__(self, sql: str) -> str:
        found = self._cache.get(sql)
        if found is None:
            found = sql.format(**self.names)
            if self.pg:
                found = found.replace("IS ?", "IS NOT DISTINCT FROM ?").replace("?", "%s")
            self._cache[sql] = found
        return found


SQLITE, PG = Dialect(False), Dialect(True)


def _rows(cur, sql: str, params: tuple = ()) -> list[tuple]:
    cur.execute(sql, params)
    return cur.fetchall()


# notifications --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    """What noting one run decided: the job's new state (None: unchanged) and the events."""

    state: str | None
    events: list[tuple[str, str, str, str, float]]  # (event, kind, target, payload, timeout)


@dataclass(frozen=True)
class Event:
    """A notification or hook due for a run's end, as the journal keeps it until it is done."""

    id: int
    run_id: int
    job: str
    event: str
    kind: str
    target: str
    payload: str
    timeout: float
    created_at: float
    state: str
    runner_host: str | None
    runner_pid: int | None
    runner_start: int | None
    started_at: float | None
    ended_at: float | None
    status: str | None
    exit_code: int | None
    detail: str | None

    @property
    def runner(self) -> ProcId | None:
        return None if self.runner_pid is None or self.runner_start is None else ProcId(self.runner_pid,
                                                                                        self.runner_start)

    def to_dict(self) -> dict[str, Any]:
        from hermes_cron.logic.zones_lite import utc_iso

        return {"id": self.id, "event": self.event, "kind": self.kind, "target": _shown(self.kind, self.target),
                "state": self.state, "status": self.status, "exit_code": self.exit_code, "detail": self.detail,
                "created_at": utc_iso(self.created_at), "started_at": utc_iso(self.started_at),
                "ended_at": utc_iso(self.ended_at)}


_EVENT_COLUMNS = ("id, run_id, job, event, kind, target, payload, timeout, created_at, state, runner_host, runner_pid, "
                  "runner_start, started_at, ended_at, status, exit_code, detail")


def _shown(kind: str, target: str) -> str:
    return target.split("?", 1)[0] if kind == "webhook" else target


def note_runs(cur, d: Dialect, plan: Callable[[RunRecord, str | None, bool], Planned], now: float,
              limit: int = NOTE_BATCH) -> int:
    """Decide the notifications of the runs that ended and were not noted yet (oldest end first),
    in the caller's transaction: the events are inserted, each job's state moves on, and the
    runs are marked noted, together, so an event is never lost nor made twice. A failed attempt
    followed by a retry of its slot gives no event (the last attempt speaks). Returns the events
    made."""
    runs = [record(r) for r in _rows(cur, d(
        f"SELECT {', '.join(COLUMNS)} FROM {{runs}} WHERE noted IS NOT NULL AND (noted = {TO_NOTE} OR ended_at < ?) "
        "ORDER BY ended_at, id LIMIT ?") + d.lock_rows, (now - HELD_FOR, limit))]
    states: dict[str, str | None] = {}
    made = 0
    for run in runs:
        if run.job not in states:
            found = _rows(cur, d("SELECT state FROM {alert_state} WHERE job = ?"), (run.job,))
            states[run.job] = found[0][0] if found else None
        retried = bool(_rows(cur, d("SELECT 1 FROM {runs} WHERE job = ? AND scheduled IS ? AND attempt > ? "
                                    "AND trigger = ? LIMIT 1"),
                             (run.job, run.scheduled, run.attempt, str(run.trigger)))) \
            if run.scheduled is not None and str(run.outcome) in RETRIED else False
        planned = plan(run, states[run.job], retried)
        for event, kind, target, payload, timeout in planned.events:
            cur.execute(d("INSERT INTO {events} (run_id, job, event, kind, target, payload, timeout, created_at, state) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')"),
                        (run.id, run.job, event, kind, target, payload, timeout, now))
            made += 1
        if planned.state is not None and planned.state != states[run.job]:
            cur.execute(d("INSERT INTO {alert_state} (job, state, since, run_id) VALUES (?, ?, ?, ?) ON CONFLICT (job) "
                          "DO UPDATE SET state = excluded.state, since = excluded.since, run_id = excluded.run_id"),
                        (run.job, planned.state, run.ended_at or now, run.id))
            states[run.job] = planned.state
    if runs:
        cur.execute(d("UPDATE {runs} SET noted = NULL WHERE id IN (" + ", ".join("?" * len(runs)) + ")"),
                    tuple(r.id for r in runs))
    return made


def release(cur, d: Dialect, run_id: int) -> None:
    """A held run's retry was decided (claimed or not): note it now."""
    cur.execute(d(f"UPDATE {{runs}} SET noted = {TO_NOTE} WHERE id = ? AND noted = {HELD}"), (run_id,))


def open_events(cur, d: Dialect) -> list[Event]:
    return [Event(*r) for r in _rows(cur, d(f"SELECT {_EVENT_COLUMNS} FROM {{events}} WHERE state <> 'done' "
                                            "ORDER BY id"))]


def events(cur, d: Dialect, ids: Iterable[int]) -> list[Event]:
    ids = list(ids)
    if not ids:
        return []
    return [Event(*r) for r in _rows(cur, d(f"SELECT {_EVENT_COLUMNS} FROM {{events}} WHERE id IN ("
                                            + ", ".join("?" * len(ids)) + ") ORDER BY id"), tuple(ids))]


def events_of_runs(cur, d: Dialect, run_ids: list[int]) -> dict[int, list[Event]]:
    found: dict[int, list[Event]] = {}
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        for r in _rows(cur, d(f"SELECT {_EVENT_COLUMNS} FROM {{events}} WHERE run_id IN ("
                              + ", ".join("?" * len(chunk)) + ") ORDER BY id"), tuple(chunk)):
            e = Event(*r)
            found.setdefault(e.run_id, []).append(e)
    return found


def claim_event(cur, d: Dialect, event_id: int, host: str, runner: ProcId, now: float) -> bool:
    """pending -> running, by this runner (of this host): at most one runner ever runs an event."""
    cur.execute(d("UPDATE {events} SET state = 'running', runner_host = ?, runner_pid = ?, runner_start = ?, "
                  "started_at = ? WHERE id = ? AND state = 'pending'"), (host, runner.pid, runner.start, now, event_id))
    return cur.rowcount == 1


def end_event(cur, d: Dialect, event_id: int, runner: ProcId | None, now: float, status: str,
              exit_code: int | None, detail: str | None) -> bool:
    """running -> done (by its runner; None: whoever settles a runner that vanished). An event
    whose run was pruned meanwhile goes with it."""
    cond, params = ("runner_pid = ? AND runner_start = ?", (runner.pid, runner.start)) if runner else ("1 = 1", ())
    cur.execute(d(f"UPDATE {{events}} SET state = 'done', ended_at = ?, status = ?, exit_code = ?, detail = ? "
                  f"WHERE id = ? AND state = 'running' AND {cond}"),
                (now, status, exit_code, (detail or "")[:2000] or None, event_id, *params))
    changed = cur.rowcount == 1
    cur.execute(d("DELETE FROM {events} WHERE id = ? AND state = 'done' AND NOT EXISTS "
                  "(SELECT 1 FROM {runs} WHERE {runs}.id = {events}.run_id)"), (event_id,))
    return changed


def drop_events(cur, d: Dialect, run_ids: list[int]) -> None:
    """The events of pruned runs, once done (one still to send keeps its payload and goes after)."""
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start:start + 500]
        cur.execute(d("DELETE FROM {events} WHERE state = 'done' AND run_id IN (" + ", ".join("?" * len(chunk)) + ")"),
                    tuple(chunk))


# daemons' up-times --------------------------------------------------------------------------

def daemon_started(cur, d: Dialect, node: str, me: ProcId, now: float, last_seen: float | None = None) -> int:
    """Record a daemon's start; a row of this node still open is one that crashed: it was last
    seen at its seen_at, or at `last_seen` (the node's own note of its last tick) if later but
    not after its start. Keeps the newest KEEP_DAEMONS rows."""
    cur.execute(d("UPDATE {daemons} SET how = 'crashed', stopped_at = CASE WHEN ? > seen_at AND ? <= ? THEN ? "
                  "ELSE seen_at END, seen_at = CASE WHEN ? > seen_at AND ? <= ? THEN ? ELSE seen_at END "
                  "WHERE node = ? AND how = 'up'"),
                (*((last_seen or 0.0, last_seen or 0.0, now, last_seen) * 2), node))
    cur.execute(d("INSERT INTO {daemons} (node, pid, pid_start, started_at, seen_at, how) "
                  "VALUES (?, ?, ?, ?, ?, 'up') RETURNING id"), (node, me.pid, me.start, now, now))
    row_id = int(cur.fetchone()[0])
    cur.execute(d("DELETE FROM {daemons} WHERE id <= ?"), (row_id - KEEP_DAEMONS,))
    return row_id


def daemon_seen(cur, d: Dialect, row_id: int, now: float) -> None:
    cur.execute(d("UPDATE {daemons} SET seen_at = ? WHERE id = ? AND how = 'up'"), (now, row_id))


def daemon_stopped(cur, d: Dialect, row_id: int, now: float) -> None:
    cur.execute(d("UPDATE {daemons} SET seen_at = ?, stopped_at = ?, how = 'stopped' WHERE id = ?"),
                (now, now, row_id))


@dataclass(frozen=True)
class Uptime:
    """A daemon's stretch of life on a node: when it started, was last seen, and how it stopped."""

    node: str
    pid: int
    started_at: float
    seen_at: float
    stopped_at: float | None
    how: str  # up, stopped, crashed


def uptimes(cur, d: Dialect, since: float | None = None) -> list[Uptime]:
    """Up-times that reach `since` or later, oldest first."""
    return [Uptime(*r) for r in _rows(cur, d("SELECT node, pid, started_at, seen_at, stopped_at, how FROM {daemons} "
                                             "WHERE COALESCE(stopped_at, seen_at) >= ? ORDER BY started_at, id"),
                                      (since if since is not None else 0.0,))]


# the definitions' history -------------------------------------------------------------------

@dataclass(frozen=True)
class DefChange:
    """A change to a job's definition, as recorded for explaining its slots later."""

    job: str
    at: float
    change: str  # insert (added), reset (schedule changed), enable (resumed), set-enabled, delete (removed)
    fingerprint: tuple[str, ...] | None  # schedule, zone, anchor[, jitter], as the job's fingerprint has them
    enabled: bool


def record_changes(cur, d: Dialect, changes: list, at: float) -> None:
    """Keep the schedule changes a tick applied (logic/sched.py's SchedChange), bounded."""
    if not changes:
        return
    cur.executemany(d("INSERT INTO {job_history} (job, at, change, fingerprint, enabled) VALUES (?, ?, ?, ?, ?)"),
                    [(ch.job, at, ch.kind, json.dumps(ch.fingerprint.split("\0")) if ch.fingerprint else None,
                      int(ch.enabled)) for ch in changes])
    # Under the tick lock: each statement uses an index. A bulk change (a first reconcile, an
    # import) is new jobs with one row each; an edit prunes its job's oldest rows.
    if len(changes) <= 100:
        cur.executemany(d("DELETE FROM {job_history} WHERE job = ? AND id <= (SELECT id FROM {job_history} "
                          "WHERE job = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"),
                        [(job, job, KEEP_HISTORY) for job in {ch.job for ch in changes}])
    cur.execute(d("DELETE FROM {job_history} WHERE id <= (SELECT MAX(id) FROM {job_history}) - ?"), (KEEP_HISTORY_ALL,))


def job_history(cur, d: Dialect, job: str) -> list[DefChange]:
    """The job's kept changes, oldest first."""
    return [DefChange(job, at, change, tuple(json.loads(fp)) if fp else None, bool(enabled))
            for at, change, fp, enabled in _rows(cur, d("SELECT at, change, fingerprint, enabled FROM {job_history} "
                                                        "WHERE job = ? ORDER BY id"), (job,))]


class Journal:
    """The journal's operations as a store offers them (a mixin of SqliteStore and PgStore, which
    give `_dialect`, `_write()`: a cursor in a write transaction, and `_read()`: a cursor to read)."""

    _dialect: Dialect

    def _write(self) -> Any: ...
    def _read(self) -> Any: ...

    def _write_light(self) -> Any:
        """A write that may be lost to a power cut (SQLite: no fsync), for facts that are
        refreshed anyway: the idle daemon's tick then costs no disk flush."""
        return self._write()

    def note_runs(self, plan: Callable[[RunRecord, str | None, bool], Planned], now: float) -> int:
        with self._write() as cur:
            return note_runs(cur, self._dialect, plan, now)

    def release_note(self, run_id: int) -> None:
        with self._write() as cur:
            release(cur, self._dialect, run_id)

    def unnoted(self) -> bool:
        """Is any ended run still to be noted, now or once its retry is decided (held)?"""
        with self._read() as cur:
            return bool(_rows(cur, self._dialect("SELECT 1 FROM {runs} WHERE noted IS NOT NULL LIMIT 1")))

    def open_events(self) -> list[Event]:
        with self._read() as cur:
            return open_events(cur, self._dialect)

    def events(self, ids: Iterable[int]) -> list[Event]:
        with self._read() as cur:
            return events(cur, self._dialect, ids)

    def events_of_runs(self, run_ids: list[int]) -> dict[int, list[Event]]:
        with self._read() as cur:
            return events_of_runs(cur, self._dialect, run_ids)

    def claim_event(self, event_id: int, host: str, runner: ProcId, now: float) -> bool:
        with self._write() as cur:
            return claim_event(cur, self._dialect, event_id, host, runner, now)

    def end_event(self, event_id: int, runner: ProcId | None, now: float, status: str, exit_code: int | None,
                  detail: str | None) -> bool:
        with self._write() as cur:
            return end_event(cur, self._dialect, event_id, runner, now, status, exit_code, detail)

    def daemon_started(self, node: str, me: ProcId, now: float, last_seen: float | None = None) -> int:
        with self._write() as cur:
            return daemon_started(cur, self._dialect, node, me, now, last_seen)

    def daemon_seen(self, row_id: int, now: float) -> None:
        with self._write_light() as cur:
            daemon_seen(cur, self._dialect, row_id, now)

    def daemon_stopped(self, row_id: int, now: float) -> None:
        with self._write() as cur:
            daemon_stopped(cur, self._dialect, row_id, now)

    def uptimes(self, since: float | None = None) -> list[Uptime]:
        with self._read() as cur:
            return uptimes(cur, self._dialect, since)

    def job_history(self, job: str) -> list[DefChange]:
        with self._read() as cur:
            return job_history(cur, self._dialect, job)
