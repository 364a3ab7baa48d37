"""`hermes-cron import`: a user crontab (logic/crontab.py), or the JSON `export` wrote, added to
the jobs in one edit. A name already taken is left as it is (importing twice adds nothing);
what can't be expressed is refused with its line number, and nothing is added then."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from hermes_cron.app.jobs import add_jobs
from hermes_cron.contract.paths import Home
from hermes_cron.errors import InvalidInput
from hermes_cron.logic.crontab import parse_crontab
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.zones import local_zone_name
from hermes_cron.store import definitions

_VIEW_KEYS = ("state", "next_run", "last_status", "last_ended", "running", "hermes")


@dataclass
class Plan:
    """What an import would do: the jobs it adds, the names already defined, and notes for the user."""

    new: list[Job] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_crontab(home: Home, text: str, tz: str | None = None) -> Plan:
    parsed = parse_crontab(text, tz or local_zone_name(), time.time())
    if parsed.errors:
        raise InvalidInput("; ".join(f"line {n}: {why}" for n, why in parsed.errors[:20])
                           + ("" if len(parsed.errors) <= 20 else f" (and {len(parsed.errors) - 20} more)"))
    return _plan(home, [job for _, job in parsed.jobs], [f"line {n}: {why}" for n, why in parsed.notes])


def plan_export(home: Home, raw: bytes) -> Plan:
    try:
        doc = json.loads(raw)
        entries = doc["jobs"]
        if not isinstance(entries, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("not an export of hermes-cron (a JSON object with a \"jobs\" list)") from None
    jobs, notes = [], []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise InvalidInput(f"job #{i} is not an object")
        if entry.get("hermes"):
            notes.append(f"{entry.get('name')}: the Hermes agent's job, left to Hermes")
            continue
        if entry.get("state") == "invalid":
            notes.append(f"{entry.get('name')}: invalid in the export ({entry.get('reason')}), not imported")
            continue
        data = {k: v for k, v in entry.items() if k not in _VIEW_KEYS}
        try:
            jobs.append(Job.from_dict(data))
        except InvalidInput as e:
            raise InvalidInput(f"job #{i}: {e}") from None
    return _plan(home, jobs, notes)


def _plan(home: Home, jobs: list[Job], notes: list[str]) -> Plan:
    have = definitions.load(home)
    plan = Plan(notes=notes)
    for job in jobs:
        if job.name in have.jobs or job.name in have.invalid:
            plan.existing.append(job.name)
        else:
            plan.new.append(job)
    return plan


def apply(home: Home, plan: Plan) -> list[Job]:
    return add_jobs(home, plan.new) if plan.new else []
