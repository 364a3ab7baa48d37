"""The library entry point: `tick()` for programs that drive hermes-cron themselves."""

from __future__ import annotations

from typing import Any

from hermes_cron.contract.logs import get_logger
from hermes_cron.contract.paths import Home, resolve_home
from hermes_cron.contract.procinfo import ProcId, boot_id
from hermes_cron.engine.dispatch import Dispatcher
from hermes_cron.engine.claims import TickReport
from hermes_cron.engine.ticker import Scheduler
from hermes_cron.store.migrate import migrate
from hermes_cron.store.opening import open_store


def tick(home: str | Home | None = None, now: float | None = None, log: Any = None) -> TickReport:
    """Run one tick for `home`: record the runs of earlier ticks that have finished, claim what
    is due under the tick lock, start it, and return without waiting for any job. Safe beside a
    running daemon and other tick() callers: each due slot is dispatched once between them."""
    home = home if isinstance(home, Home) else Home(resolve_home(home))
    log = log if log is not None else get_logger()
    me = ProcId.me()
    migrate(home)
    store = open_store(home)
    try:
        dispatcher = Dispatcher(home, store, me, log, detach=True)
        dispatcher.recorder.collect()
        report = Scheduler(home, store, me, boot_id()).claim(now)
        dispatcher.submit(report.claims)
        return report
    finally:
        store.close()
