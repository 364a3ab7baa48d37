"""`hermes-cron defaults`: the notification settings every job has unless it says otherwise."""

from __future__ import annotations

from typing import Any

import click

from hermes_cron.cli.common import _ctx, _emit_json, _home_option, cli
from hermes_cron.cli.options import ALERT_OPTIONS, NO_ALERT_OPTIONS, alert_fields


def _alert_options(f):
    for option in reversed(ALERT_OPTIONS + NO_ALERT_OPTIONS):
        f = option(f)
    return f


@cli.command()
@_alert_options
@click.option("--clear", is_flag=True, help="Remove every default (then apply the options given).")
@click.option("--json", "as_json", is_flag=True, help="Print the defaults as JSON.")
@_home_option
def defaults(clear: bool, as_json: bool, **opts: Any) -> None:
    """Show or set the notification defaults for all jobs (a job's own settings win)."""
    from hermes_cron.app.alerts import defaults as current, set_defaults

    home = _ctx().home
    changes = alert_fields(opts)
    if changes or clear:
        shown, problem = set_defaults(home, changes, clear), None
    else:
        shown, problem = current(home)
    if as_json:
        _emit_json({"defaults": {k: list(v) if isinstance(v, tuple) else v for k, v in shown.items()},
                    "problem": problem})
        return
    if problem:
        click.echo(f"the stored defaults are not used: {problem}", err=True)
    if not shown:
        click.echo("no defaults: jobs notify only as they say themselves")
    for key, value in shown.items():
        if key == "notify":
            value = " ".join(value)
        elif key == "hook_timeout":
            value = f"{value:g}s"
        click.echo(f"{key.replace('_', '-')}: {value}")
