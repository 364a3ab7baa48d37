"""The defaults for all jobs' notifications (`hermes-cron defaults`), and the notifications of runs
as `history --json` shows them."""

from __future__ import annotations

from typing import Any

from hermes_cron.contract.paths import Home
from hermes_cron.errors import InvalidInput
from hermes_cron.store import definitions
from hermes_cron.store.opening import open_store


def defaults(home: Home) -> tuple[dict[str, Any], str | None]:
    """(the defaults in force, why the stored ones are not used or None)."""
    defs = definitions.load(home)
    return defs.defaults, defs.defaults_error


def set_defaults(home: Home, changes: dict[str, Any], clear: bool) -> dict[str, Any]:
    """Change the defaults: `changes` set (None or () removes a setting); `clear` starts from none.
    The daemon reads them at its next note (a signal is not needed: it re-reads changed files)."""
    from hermes_cron.logic.alerts import check_alerts

    def change(current: dict) -> dict:
        new = {} if clear else dict(current)
        for key, value in changes.items():
            if value is None or value == ():
                new.pop(key, None)
            else:
                new[key] = list(value) if key == "notify" else value
        check_alerts(new, "defaults")
        return new

    if not changes and not clear:
        raise InvalidInput("nothing to change")
    return definitions.set_defaults(home, change)


def with_events(home: Home, runs: list) -> list[dict[str, Any]]:
    """Each run as `history --json` shows it, with its notifications and how they went."""
    if not runs:
        return []
    store = open_store(home)
    try:
        found = store.events_of_runs([r.id for r in runs])
    finally:
        store.close()
    return [{**r.to_dict(), "notifications": [e.to_dict() for e in found.get(r.id, [])]} for r in runs]
