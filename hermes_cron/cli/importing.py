"""`hermes-cron import crontab [FILE|-]` and `hermes-cron import FILE.json` (app/importing.py)."""

from __future__ import annotations

import sys

import click

from hermes_cron.cli.common import _ctx, _home_option, cli
from hermes_cron.errors import InvalidInput


@cli.command(name="import")
@click.argument("source", metavar="crontab|FILE.json")
@click.argument("file", required=False, metavar="[FILE|-]")
@click.option("--dry-run", is_flag=True, help="Show what would be added; add nothing.")
@click.option("--tz", metavar="ZONE", help="crontab: the zone of its schedules before any CRON_TZ= (default: "
              "this machine's).")
@_home_option
def import_(source: str, file: str | None, dry_run: bool, tz: str | None) -> None:
    """Add the jobs of a user crontab, or restore an `export`. Names already taken are left alone."""
    from hermes_cron.app.importing import apply, plan_crontab, plan_export

    home = _ctx().home
    if source == "crontab":
        if file is None:
            raise InvalidInput("give the crontab's file, or - for standard input (e.g. crontab -l | "
                               "hermes-cron import crontab -)")
        plan = plan_crontab(home, _read(file).decode(errors="replace"), tz)
    else:
        if file is not None:
            raise InvalidInput("import FILE.json takes one file; for a crontab: hermes-cron import crontab FILE")
        plan = plan_export(home, _read(source))
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    for name in plan.existing:
        click.echo(f"  = {name} (already there, left as it is)")
    for job in plan.new:
        click.echo(f"  + {job.name:<24} {job.schedule:<20} {job.command_text()[:80]}")
    if dry_run:
        click.echo(f"dry run: {len(plan.new)} job(s) would be added")
        return
    added = apply(home, plan)
    click.echo(f"added {len(added)} job(s)" + (f", {len(plan.existing)} already there" if plan.existing else ""))


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read(16 << 20)
    except OSError as e:
        raise InvalidInput(f"can't read {path}: {e.strerror}") from None
