"""`hermes-cron-watchdog`: keep a hermes-cron daemon alive and ticking."""

from __future__ import annotations

import sys

import click

from hermes_cron.contract.cli_types import Count, Seconds
from hermes_cron.contract.cli_types import LOG_FORMATS as FORMATS, LOG_LEVELS as LEVELS

from . import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", metavar="PATH", help="HERMES_HOME (default: $HERMES_HOME, else ~/.hermes).")
@click.option("--stale-after", type=Seconds(0.1, 86400), metavar="SECONDS",
              help="Heartbeat unmoved this long counts as a hang (default: 2 x its interval).")
@click.option("--check-every", type=Seconds(0.05, 3600), metavar="SECONDS",
              help="Seconds between checks (default: a quarter of the threshold, 0.2 s to 30 s).")
@click.option("--systemd-unit", "unit", metavar="UNIT", help="Restart with systemctl restart UNIT.")
@click.option("--user", is_flag=True, help="With --systemd-unit: the user's systemd (systemctl --user).")
@click.option("--kill-timeout", default=10.0, show_default=True, type=Seconds(0, 3600),
              help="Seconds between SIGTERM and SIGKILL of a hung daemon.")
@click.option("--burst", default=5, show_default=True, type=Count(1, 1000),
              help="At most this many restarts ...")
@click.option("--window", default=1800.0, show_default=True, type=Seconds(1, 7 * 86400),
              help="... within this many seconds, then give up until healthy or the window passes.")
@click.option("--backoff", default=2.0, show_default=True, type=Seconds(0, 86400),
              help="Wait after a restart before another; doubles with each restart in the window.")
@click.option("--backoff-max", default=300.0, show_default=True, type=Seconds(0, 86400))
@click.option("--once", is_flag=True, help="Check once and exit: 0 healthy, 1 gone, 2 hung, 3 failing, 4 starting, "
              "5 waiting for another ticker's tick lock, 6 heartbeat written by another ticker.")
@click.option("--log-format", type=click.Choice(FORMATS), default="auto")
@click.option("--log-file", type=click.Path(dir_okay=False))
@click.option("--log-level", type=click.Choice(LEVELS), default="info")
@click.version_option(__version__, prog_name="hermes-cron-watchdog")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- RUN-OPTIONS...]")
def watchdog(home: str | None, stale_after: float | None, check_every: float | None, unit: str | None,
             user: bool, kill_timeout: float, burst: int, window: float, backoff: float, backoff_max: float,
             once: bool, log_format: str,
             log_file: str | None, log_level: str, run_args: tuple[str, ...]) -> None:
    """Watch a hermes-cron daemon and bring it back when it hangs or dies.

    Without --systemd-unit it starts `hermes-cron --home HOME run RUN-OPTIONS...` itself, with
    this installation's hermes-cron: never a command taken from a file in the home."""
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]  # no TLS here either (see hermes_cron.cli)
    from hermes_cron.errors import HermesCronError
    from hermes_cron.contract.logs import configure, get_logger
    from hermes_cron.contract.paths import resolve_home

    from .core import Watchdog
    from .restarts import RestartBook
    from .system import System

    configure(log_format, log_file, log_level)
    dog = Watchdog(System(resolve_home(home), list(run_args) or None), get_logger(), stale_after, check_every, unit, user,
                   kill_timeout, RestartBook(burst=burst, window=window, base=backoff, ceiling=backoff_max))
    try:
        sys.exit(dog.once() if once else dog.run())
    except HermesCronError as e:
        click.echo(f"hermes-cron-watchdog: {e}", err=True)
        sys.exit(e.exit_code)


def main() -> None:
    """Entry point: usage errors as one line and exit 2, as hermes-cron does."""
    try:
        watchdog.main(prog_name="hermes-cron-watchdog", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"hermes-cron-watchdog: {e.format_message()} (see hermes-cron-watchdog --help)", err=True)
        sys.exit(e.exit_code)
    sys.exit(0)
