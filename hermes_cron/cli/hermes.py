"""`hermes-cron hermes enable|disable|status`: handing the Hermes agent's cron ticker over to
hermes-cron, and back (app/hermes.py)."""

from __future__ import annotations

import click

from hermes_cron.cli.common import _ctx, _emit_json, _home_option, cli


@cli.group()
def hermes() -> None:
    """Tick the Hermes agent's own cron jobs with hermes-cron (or stop)."""


@hermes.command()
@click.option("--python", "python", metavar="PATH", help="Hermes's Python (default: the one the `hermes` "
              "executable names)")
@click.option("--timeout", default=None, metavar="DURATION",
              help="Stop a Hermes run that lasts longer (default: none; Hermes's own timeouts apply).")
@_home_option
def enable(python: str | None, timeout: str | None) -> None:
    """Install the provider plugin and select it in Hermes's config.yaml (one line)."""
    from hermes_cron.app.hermes import enable as do_enable
    from hermes_cron.logic.durations import TIMEOUT, parse_duration

    seconds = parse_duration(timeout, "timeout", TIMEOUT) if timeout is not None else None
    for line in do_enable(_ctx().home, python, seconds):
        click.echo(line)


@hermes.command()
@_home_option
def disable() -> None:
    """Put Hermes's config.yaml back as it was and remove the plugin."""
    from hermes_cron.app.hermes import disable as do_disable

    for line in do_disable(_ctx().home):
        click.echo(line)


@hermes.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_home_option
def hermes_status(as_json: bool) -> None:
    """Whether hermes-cron ticks Hermes's jobs, and Hermes's jobs as read."""
    from hermes_cron.app.hermes_view import hermes_report
    from hermes_cron.cli.render import hermes_lines

    report = hermes_report(_ctx().home)
    if as_json:
        _emit_json(report)
    else:
        for line in hermes_lines(report):
            click.echo(line)
