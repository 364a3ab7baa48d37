"""The library entry point: `tick()` for programs that drive hermes-cron themselves."""

from __future__ import annotations

from typing import Any

from hermes_cron.engine.dispatch import Dispatcher
from hermes_cron.contract.logs import get_logger
from hermes_cron.contract.paths import Home, resolve_home
from hermes_cron.contract.procinfo import ProcId, boot_id
from hermes_cron.store.sqlite import State
from hermes_cron.engine.ticker import Scheduler, TickReport


def tick(home: str | Home | None = None, now: float | None = None, log: Any = None) -> TickReport:
    """Run one tick for `home`: claim what is due under the tick lock, start it, and return
    without waiting for any job. Safe beside a running daemon and other tick() callers: each
    due slot is dispatched once between them. Finished runs are recorded by the daemon, or by
    the next command that looks at the history."""
    home = home if isinstance(home, Home) else Home(resolve_home(home))
    log = log if log is not None else get_logger()
    me = ProcId.me()
    state = State(home)
    try:
        report = Scheduler(home, state, me, boot_id()).tick(now)
        dispatcher = Dispatcher(home, state, me, log, detach=True)
        dispatcher.submit(report.claims)
        return report
    finally:
        state.close()
