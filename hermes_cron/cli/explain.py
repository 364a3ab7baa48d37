"""`explain`: why a slot of a job ran or didn't."""
# The store and the schedule code are imported inside the command on purpose: every command's
# start imports this module, and `status` must start fast.

from __future__ import annotations

import click

from hermes_cron.cli.common import _ctx, _emit_json, _home_option, cli, complete_job_names
from hermes_cron.contract.cli_types import Count


@cli.command()
@click.argument("name", shell_complete=complete_job_names)
@click.option("--at", "at", metavar="TIME",
              help="The moment to explain: ISO 8601, in the job's zone unless it carries an offset "
                   "(2026-12-01T09:00, 2026-12-01T08:00Z, 2026-12-01T09:00+01:00).")
@click.option("--last", "-n", "last", type=Count(1, 1000), metavar="N",
              help="Explain the last N slots up to now, newest first (default 1).")
@click.option("--json", "as_json", is_flag=True,
              help="Machine-readable output: one object with --at, else a list, newest first.")
@_home_option
def explain(name: str, at: str | None, last: int | None, as_json: bool) -> None:
    """Say why a slot of a job ran or didn't: ran (and how it ended, retries included), skipped
    (overlap), missed (no daemon up), paused, not defined then, not a slot, moved by DST, waiting
    for the tick lock, not yet, or not known any more (history pruned)."""
    if at is not None and last is not None:
        raise click.UsageError("--at and --last exclude each other: one moment, or the last N slots")
    from hermes_cron.app.explain import explain as explain_job
    from hermes_cron.app.hermes_view import resolve

    home = _ctx().home
    name = resolve(home, name)
    found = explain_job(home, name, at, last or 1)
    if as_json:
        _emit_json(found[0].to_dict() if at is not None else [e.to_dict() for e in found])
        return
    for e in found:
        click.echo(e.sentence)
