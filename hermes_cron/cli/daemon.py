"""Daemon commands: run (in the foreground), start, stop, restart, status, repair."""
# The store, engine and schedule code are imported inside the commands on purpose: every
# command's start imports this module, and `status` must start fast.

from __future__ import annotations

import sys
import time
from typing import Any

import click

from hermes_cron.cli.common import _ctx, _emit_json, _home_option, cli
from hermes_cron.cli.options import passed_on_options, run_options
from hermes_cron.cli.render import status_lines
from hermes_cron.contract.cli_types import Seconds


@cli.command()
@run_options
@_home_option
def run(tick_interval: float, heartbeat_every: int, max_concurrent: int | None, ping: str | None,
        lease: float | None, log_format: str, log_file: str | None, log_level: str) -> None:
    """Run the daemon in the foreground."""
    from hermes_cron.cli.rundaemon import run_daemon

    sys.exit(run_daemon(_ctx(), tick_interval=tick_interval, heartbeat_every=heartbeat_every,
                        max_concurrent=max_concurrent, ping=ping, lease=lease, log_format=log_format,
                        log_file=log_file, log_level=log_level))


def _run_args(opts: dict[str, Any]) -> list[str]:
    from hermes_cron.contract.command import run_args

    return run_args(opts)


def _start(run_args: list[str]) -> None:
    from hermes_cron.app.control import start as start_daemon

    ctx = _ctx()
    home = ctx.home
    proc, already = start_daemon(home, run_args, as_user=ctx.became_user)
    if already:
        click.echo(f"hermes-cron is already running (pid {proc.pid})")
    else:
        click.echo(f"hermes-cron started (pid {proc.pid})")


@cli.command()
@passed_on_options
@_home_option
def start(**opts: Any) -> None:
    """Start the daemon in the background; returns once it has ticked."""
    _start(_run_args(opts))


def _stop(timeout: float, jobs: bool) -> None:
    from hermes_cron.app.control import stop as stop_daemon
    from hermes_cron.app.runs import stop_runs

    home = _ctx().home
    found, killed, warning = stop_daemon(home, timeout)
    if warning:
        click.echo(f"hermes-cron: warning: {warning}", err=True)
    if found.proc is None:
        if found.info is not None:
            click.echo(f"hermes-cron is not running (removed a stale pidfile: {found.describe_stale()})")
        else:
            click.echo("hermes-cron is not running")
    else:
        click.echo(f"hermes-cron stopped (pid {found.proc.pid}{', with SIGKILL' if killed else ''})")
    if jobs:
        n = stop_runs(home, "stopped by hermes-cron stop --jobs")
        click.echo(f"stopped {n} running job(s)" if n else "no jobs were running")


@cli.command()
@click.option("--timeout", default=10.0, show_default=True, type=Seconds(0, 3600),
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.option("--jobs", is_flag=True, help="Also stop running jobs (TERM, then KILL after their kill grace).")
@_home_option
def stop(timeout: float, jobs: bool) -> None:
    """Stop the daemon. Running jobs go on unless --jobs is given."""
    _stop(timeout, jobs)


@cli.command()
@click.option("--timeout", default=10.0, show_default=True, type=Seconds(0, 3600))
@passed_on_options
@_home_option
def restart(timeout: float, **opts: Any) -> None:
    """Stop, then start with the same options (or the ones given here)."""
    from hermes_cron.app.control import lookup

    run_args = _run_args(opts)
    found = lookup(_ctx().home)
    if not run_args and found.info is not None and found.info.argv:
        argv = found.info.argv
        run_args = argv[argv.index("run") + 1:] if "run" in argv else []
    _stop(timeout, False)
    _start(run_args)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--cluster", is_flag=True, help="Shared store: every node, its health, leases and clock offset.")
@_home_option
def status(as_json: bool, cluster: bool) -> None:
    """Is the daemon running and healthy? Exit 0 healthy, 1 dead with a pidfile, 3 not running,
    150 running but unhealthy."""
    from hermes_cron.app.control import status_report

    report, code = status_report(_ctx().home)
    if cluster:
        if _ctx().home.store is None:
            from hermes_cron.errors import InvalidInput

            raise InvalidInput("--cluster needs a shared store (--store postgresql://... or HERMES_CRON_STORE)")
        from hermes_cron.cli.render import cluster_lines
        from hermes_cron.store.pg_status import cluster as cluster_facts

        report["cluster"] = cluster_facts(_ctx().home)
        if not as_json:
            click.echo("\n".join(status_lines(report, code, time.time()) + cluster_lines(report["cluster"])))
            sys.exit(code)
    if as_json:
        _emit_json({**report, "exit_code": code})
    else:
        click.echo("\n".join(status_lines(report, code, time.time())))
    sys.exit(code)



@cli.command()
@_home_option
def repair() -> None:
    """As root: give back to the home's owner the files that root left in its cron/ folder."""
    from hermes_cron.contract.access import repair as repair_home
    from hermes_cron.contract.paths import resolve_home

    changed = repair_home(resolve_home(_ctx()._home_opt))
    if not changed:
        click.echo("nothing to repair: no file of root's in the home")
        return
    click.echo(f"gave {len(changed)} file(s) and folder(s) back to the home's owner, e.g. {changed[0]}")
