"""What a tick is logged as: its claims, skips and misses, the jobs set aside, and a warning
with the phases when it held the tick lock too long."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import time

from hermes_cron import __version__
from hermes_cron.contract.heartbeat import Heartbeat, LockWait, TickError, write_heartbeat
from hermes_cron.logic.histogram import LOCK_HOLD, Histogram

from hermes_cron.engine.claims import TickReport
from hermes_cron.logic.zones_lite import utc_iso


@dataclass
class Health:
    """What the daemon knows of its own ticks, for its heartbeat, its log and systemd."""

    ticks: int = 0
    last_ok_tick: float | None = None
    last_error: TickError | None = None
    lock_wait: LockWait | None = None  # another ticker holds the tick lock: since when, and who
    consecutive_failures: int = 0
    started_at: float = 0.0
    tick_failures: int = 0
    claims: int = 0
    lock_hold: Histogram = field(default_factory=lambda: Histogram(LOCK_HOLD))


SLOW_TICK = 0.05  # a tick holding the lock longer than this is logged as a warning, with its phases


def log_report(log: Any, report: TickReport, counted: bool, ticks: int) -> None:
    for name, why in report.invalid:
        log.error("job.invalid", job=name, reason=why, note="not scheduled until hermes-cron-jobs.json is fixed")
    for name, why in report.broken:
        log.error("job.unschedulable", job=name, reason=why,
                       note="set aside until its definition changes; the other jobs go on")
    for s in report.skipped:
        log.info("job.skipped", job=s.job, run_id=s.run_id, scheduled=utc_iso(s.slot), reason="overlap")
    for m in report.missed:
        log.warning("job.missed", job=m.job, count=m.count, at_least=m.at_least,
                         first=utc_iso(m.first), newest=utc_iso(m.newest))
    if report.lock_held > SLOW_TICK:
        log.warning("tick.slow", lock_held_ms=round(report.lock_held * 1000, 3),
                         phases_ms={k: round(v * 1000, 3) for k, v in report.phases.items()})
    eventful = report.claims or report.skipped or report.missed
    (log.info if eventful else log.debug)(
        "tick", counted=counted, ticks=ticks, claimed=len(report.claims),
        lock_held_ms=round(report.lock_held * 1000, 3), at=round(report.wall, 6),
        horizon=round(report.now, 6), quiet=report.quiet,
    )


def status_line(ticks: int, failures: int, dispatcher: Any, state: Any) -> str:
    """One line for systemd's STATUS=: ticks, runs going on, what is due next."""
    from hermes_cron.errors import HermesCronError

    running = len(dispatcher.watched) if dispatcher else 0
    ok = "ok" if failures == 0 else f"FAILING x{failures}"
    nxt = ""
    if state is not None:
        try:
            upcoming = state.upcoming(1)
            if upcoming:
                nxt = f", next {upcoming[0][0]} at {utc_iso(upcoming[0][1])}"
        except HermesCronError:
            pass
    return f"{ticks} ticks, last {ok}, {running} running{nxt}"


def write_beat(home: Any, log: Any, s: Any, h: Health, me: Any, boot: str, state: Any, dispatcher: Any,
               now: float) -> None:
    """Write the heartbeat file (contract/heartbeat.py) and log the `heartbeat` event."""
    from hermes_cron.errors import HermesCronError

    running, next_due = 0, None
    if state is not None:
        try:
            running = len(state.open_runs())
            upcoming = state.upcoming(1)
            next_due = {"job": upcoming[0][0], "at": utc_iso(upcoming[0][1])} if upcoming else None
        except HermesCronError:
            pass
    hb = Heartbeat(time=now, pid=me.pid, pid_start=me.start, boot_id=boot, ticks=h.ticks,
                   tick_interval=s.tick_interval, heartbeat_every=s.heartbeat_every,
                   interval_s=s.tick_interval * s.heartbeat_every, last_ok_tick=h.last_ok_tick,
                   last_error=h.last_error, consecutive_failures=h.consecutive_failures, running=running,
                   next_due=next_due, started_at=h.started_at, home=home.root, version=__version__,
                   lock_wait=h.lock_wait, tick_failures=h.tick_failures, claims=h.claims, histograms={
                       "lock_hold_seconds": h.lock_hold.to_dict(),
                       "fire_latency_seconds": dispatcher.fire_latency.to_dict() if dispatcher else None})
    t0 = time.monotonic()
    try:
        write_heartbeat(home.heartbeat, hb)
    except OSError as e:
        log.error("heartbeat.failed", error=str(e))
    log.info("heartbeat", uptime_s=round(now - h.started_at, 1), ticks=h.ticks,
             write_ms=round((time.monotonic() - t0) * 1000, 2), running=running, next_due=next_due,
             healthy=h.consecutive_failures == 0)
