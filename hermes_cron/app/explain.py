"""`explain`: gather what is known about a job's slots (its definition now and its recorded
changes, its kept runs, the daemons' up-times, the live daemon's heartbeat) and let the pure
logic (logic/explain.py) say why each ran or didn't. Reads only."""

from __future__ import annotations

import time

from hermes_cron.app.control import lookup
from hermes_cron.app.runs import waiting_results
from hermes_cron.contract.heartbeat import read_heartbeat
from hermes_cron.contract.paths import Home
from hermes_cron.errors import InvalidInput, JobNotFound
from hermes_cron.logic.explain import Explanation, Facts, explain_at, explain_last, read_moment
from hermes_cron.logic.explain_facts import newest_spec
from hermes_cron.logic.hermes import is_hermes_name
from hermes_cron.logic.zones import load_zone, local_zone_name
from hermes_cron.store import definitions
from hermes_cron.store.opening import open_store

LAST_MAX = 1000


def current_job(home: Home, name: str):  # -> Job | None
    """The job as defined now (ours, or a Hermes job's while it is ours to fire), or None."""
    if is_hermes_name(name):
        from hermes_cron.app.hermes_view import listing

        hj = listing(home)[1].jobs.get(name)
        return hj.job if hj is not None else None
    return definitions.load(home).jobs.get(name)


def gather(home: Home, name: str, now: float | None = None) -> Facts:
    """The facts about job `name`; JobNotFound when nothing at all is known of it."""
    now = time.time() if now is None else now
    current = current_job(home, name)
    store = open_store(home)
    try:
        runs = waiting_results(home, store.history(name, 0))
        changes = store.job_history(name)
        uptimes = store.uptimes()
    finally:
        store.close()
    if current is None and not changes and not runs:
        invalid = definitions.load(home).invalid.get(name) if not is_hermes_name(name) else None
        if invalid is not None:
            raise InvalidInput(f"job {name!r} is invalid in {home.jobs} ({invalid.reason}) and has no runs to explain")
        raise JobNotFound(f"no job named {name!r}, and no record of one")
    found = lookup(home)
    hb = read_heartbeat(home.heartbeat) if found.proc is not None else None
    if hb is not None and hb.pid != found.proc.pid:
        hb = None  # an earlier daemon's heartbeat says nothing about this one
    return Facts(job=name, now=now, current=current, changes=changes, runs=runs, uptimes=uptimes,
                 lock_wait=hb.lock_wait if hb is not None else None,
                 daemon_pid=found.proc.pid if found.proc is not None else None,
                 tick_interval=hb.tick_interval if hb is not None else 60.0,
                 seen_every=(hb.tick_interval if home.store else hb.interval_s) if hb is not None else 300.0)


def explain(home: Home, name: str, at: str | None = None, last: int = 1, now: float | None = None) -> list[Explanation]:
    """Why the job's slot at `at` (ISO 8601, in the job's zone unless it carries an offset) ran
    or didn't; without `at`, its last `last` slots up to now, newest first."""
    if not 1 <= last <= LAST_MAX:
        raise InvalidInput(f"--last {last} is out of range: 1 to {LAST_MAX}")
    facts = gather(home, name, now)
    if at is None:
        return explain_last(facts, last)
    ref = facts.current if facts.current is not None else newest_spec(facts.runs)
    zone = load_zone(ref.tz if ref is not None else local_zone_name())
    return [explain_at(facts, read_moment(at, zone))]
