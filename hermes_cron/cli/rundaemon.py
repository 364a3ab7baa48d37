"""`hermes-cron run`'s body, without click: both the click command (cli/daemon.py) and the quick
path (cli/quick.py) call it. Started by the plain command line that `start`, `restart`, the
watchdog and the systemd units write, the daemon never loads click or the other commands:
1.5-2 MB less of its resident memory for as long as it runs (scripts/bench_tick.py --only idle)."""

from __future__ import annotations

import os
import sys


def run_daemon(context, tick_interval: float, heartbeat_every: int, max_concurrent: int | None,
               ping: str | None, lease: float | None, log_format: str, log_file: str | None,
               log_level: str) -> int:
    """Run the daemon in the foreground until it is told to stop; its exit code. `context` is a
    cli/context.py Context."""
    # The daemon never speaks TLS, but asyncio (which structlog imports) loads ssl if it can,
    # and with it OpenSSL: 4 MB of resident memory for nothing. A None entry makes that
    # optional import fail quietly. Jobs are separate processes and are not affected.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from hermes_cron.contract.logs import configure, get_logger
    from hermes_cron.contract.procinfo import cmdline
    from hermes_cron.engine.daemon import Daemon, Settings
    from hermes_cron.logic.jobs import check_ping_url

    home = context.home  # settles who we act as before the log file is opened
    sink = configure(log_format, log_file, log_level)
    # The pidfile records our command line exactly as the kernel shows it: stop and the
    # watchdog signal a process only if its /proc cmdline is this, whole.
    settings = Settings(tick_interval=tick_interval, heartbeat_every=heartbeat_every,
                        max_concurrent=max_concurrent, argv=tuple(cmdline(os.getpid())),
                        lease=lease if lease is not None else max(30.0, 3 * tick_interval),
                        ping=check_ping_url(ping, "--ping") if ping else None)
    # A logger bound now, to the configuration just made: structlog's lazy proxy would build one
    # anew for every event (a tenth of an idle tick's CPU went to that).
    return Daemon(home, settings, get_logger().bind(), reopen_logs=sink.reopen).run()
