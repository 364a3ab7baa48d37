"""A run's row as both stores keep it (SQLite's `runs`, PostgreSQL's `hc_runs`): its columns,
how a row becomes a RunRecord, and the SQL condition of logic/run.py's transitions."""

from __future__ import annotations

import json

from hermes_cron.logic.run import Outcome, RunState, Trigger, allowed_from
from hermes_cron.store.base import RunRecord

COLUMNS = (
    "id job trigger scheduled state status claimed_at owner_pid owner_start started_at ended_at "
    "supervisor_pid supervisor_start job_pid job_start exit_code signal missed_count first_missed reason "
    "output output_bytes replaces spec attempt"
).split()
RAN = "status NOT IN ('skipped', 'missed')"


def record(row: tuple) -> RunRecord:
    d = dict(zip(COLUMNS, row))
    d["trigger"] = Trigger(d["trigger"])
    d["state"] = RunState(d["state"])
    d["outcome"] = Outcome(d.pop("status")) if d["status"] is not None else d.pop("status")
    d["replaces"] = tuple(json.loads(d["replaces"])) if d["replaces"] else ()
    return RunRecord(**d)


def states(to: RunState) -> str:
    """The SQL condition that a run may move to `to` (logic/run.py's table)."""
    return "state IN (" + ", ".join(f"'{s}'" for s in allowed_from(to)) + ")"
