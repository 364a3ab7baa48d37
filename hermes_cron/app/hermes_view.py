"""The Hermes agent's jobs as the commands show them: `list`, `show`, `status`, `hermes status`,
and the names the commands accept for them (`hermes.ID`, the Hermes id, or the Hermes name).
Our mutating commands refuse them with the Hermes command to use: hermes-cron never writes
Hermes's jobs.json."""

from __future__ import annotations

import os
import time
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any

from hermes_cron.contract.hermes_plugin import PLUGIN_VERSION
from hermes_cron.contract.paths import Home
from hermes_cron.errors import InvalidInput
from hermes_cron.logic.hermes import PREFIX, HermesJob, is_hermes_name
from hermes_cron.logic.zones_lite import utc_iso
from hermes_cron.store import hermes_source as hs

HERMES_EDITS = {"edit": "hermes cron edit {id} ...", "remove": "hermes cron remove {id}",
                "pause": "hermes cron pause {id}", "resume": "hermes cron resume {id}",
                "enable": "hermes cron resume {id}", "disable": "hermes cron pause {id}"}


def listing(home: Home) -> tuple[hs.Handover | None, hs.HermesView]:
    """The hand-over's state and Hermes's jobs as read now (whoever ticks them)."""
    if not home.hermes_here:
        return None, hs.HermesView()
    config = hs.read_config(home)
    h = hs.handover(home, config=config)
    return h, hs.HermesSource(home).read(config, h.runner)


def resolve(home: Home, ref: str) -> str:
    """Our name for `ref`: a name of ours as it is, else a Hermes job's id or (unique) Hermes name."""
    if is_hermes_name(ref) or "/" in ref:
        return ref
    from hermes_cron.store import definitions

    if ref in definitions.load(home).jobs or not os.path.lexists(home.legacy_jobs):
        return ref
    _, view = listing(home)
    by_id = [hj for hj in view.jobs.values() if hj.id == ref]
    by_name = [hj for hj in view.jobs.values() if hj.name == ref]
    if by_id:
        return by_id[0].our_name
    if len(by_name) == 1:
        return by_name[0].our_name
    if len(by_name) > 1:
        raise InvalidInput(f"{len(by_name)} Hermes jobs are named {ref!r}; name one by its id: "
                           + ", ".join(hj.our_name for hj in by_name))
    return ref


def refuse(home: Home, ref: str, verb: str) -> None:
    """Our edits on a Hermes job: exit 2 with the Hermes command that does it."""
    name = resolve(home, ref)
    if not is_hermes_name(name):
        return
    job_id = name[len(PREFIX):]
    hint = HERMES_EDITS.get(verb, "hermes cron ... {id}").format(id=job_id)
    raise InvalidInput(f"{name} is the Hermes agent's job {job_id}; hermes-cron never changes Hermes's jobs: "
                       f"use `{hint}`")


def _job_dict(hj: HermesJob, active: bool) -> dict[str, Any]:
    return {"name": hj.our_name, "id": hj.id, "hermes_name": hj.name, "state": hj.state, "enabled": hj.enabled,
            "schedule": hj.job.schedule if hj.job else None, "tz": hj.job.tz if hj.job else None,
            "next_run_at": hj.next_run_at, "last_status": hj.last_status, "problem": hj.problem,
            "ticked_by": "hermes-cron" if active and hj.job is not None else "Hermes's own ticker"}


def hermes_report(home: Home, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    h, view = listing(home)
    if h is None:
        return {"present": False, "jobs_file": home.legacy_jobs, "handover": None, "jobs": []}
    record = h.record or {}
    return {
        "present": True,
        "jobs_file": home.legacy_jobs,
        "jobs_read": len(view.jobs),
        "error": view.error,
        "handover": {
            "active": h.active, "reason": h.why, "provider": h.provider, "plugin_version": h.plugin,
            "plugin_current": h.plugin in (None, PLUGIN_VERSION), "python": record.get("python"),
            "hermes_ticker_age": h.hermes_ticker_age,
            "enabled_at": utc_iso(record["enabled_at"]) if isinstance(record.get("enabled_at"), (int, float))
            else None,
        },
        "jobs": [_job_dict(hj, h.active) for hj in sorted(view.jobs.values(), key=lambda j: j.name)],
    }
