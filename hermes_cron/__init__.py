"""hermes-cron: a cron daemon that fires on time, never stalls behind a slow job, heals itself
when it hangs, and never loses a job, a run record or an edit."""

from __future__ import annotations

TYPE_CHECKING = False  # typing, for annotations only, is not imported: it costs every command 3 ms
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `from hermes_cron import tick` works without making every command import the daemon code.
    if name == "tick":
        from hermes_cron.app.api import tick

        return tick
    raise AttributeError(name)
