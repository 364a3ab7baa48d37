"""What every command shares: the command group, the home and who acts on it, JSON output."""

from __future__ import annotations

import json
from typing import Any

import click

from hermes_cron import __version__
from hermes_cron.cli.context import Context, _preload  # noqa: F401 - (their home before)


def _home_option(f):
    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            ctx.ensure_object(dict)["home"] = value
        return value

    def remember_store(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            ctx.ensure_object(dict)["store"] = value
        return value

    f = click.option("--store", metavar="URL", expose_value=False, callback=remember_store, is_eager=True,
                     help="postgresql://... to share jobs and runs between hosts (default: $HERMES_CRON_STORE, "
                     "else the files in the home).")(f)
    return click.option("--home", metavar="PATH", expose_value=False, callback=remember, is_eager=True,
                        help="HERMES_HOME to use (default: $HERMES_HOME, else ~/.hermes).")(f)


def _ctx() -> Context:
    ctx = click.get_current_context()
    root = ctx.find_root()
    home = (ctx.obj or {}).get("home") or (root.obj or {}).get("home")
    store = (ctx.obj or {}).get("store") or (root.obj or {}).get("store")
    return Context(home, root.ensure_object(dict), store)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@_home_option
@click.version_option(__version__, prog_name="hermes-cron")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """hermes-cron: a cron daemon that fires on time and never loses a run."""
    if ctx.invoked_subcommand is None:  # bare `hermes-cron`: what it can do, not an error
        click.echo(ctx.get_help())


# Shell completion (README, "Shell completion"): job names from the home's job store, zones from
# the system's time zone database. A completion never fails loudly: it offers nothing instead.

def complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from hermes_cron.contract.paths import Home, resolve_home
    from hermes_cron.store import definitions

    try:
        root = (ctx.find_root().obj or {}).get("home") if ctx else None
        defs = definitions.load(Home(resolve_home(root)))
    except Exception:  # noqa: BLE001 - a shell asking must never get a traceback
        return []
    return sorted(n for n in (*defs.jobs, *defs.invalid) if n.startswith(incomplete))


def complete_zones(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    import zoneinfo

    try:
        zones = zoneinfo.available_timezones()
    except Exception:  # noqa: BLE001
        return []
    return sorted(z for z in zones if z.lower().startswith(incomplete.lower()))
