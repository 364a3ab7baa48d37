"""The `hermes-cron` command: a thin click layer over the library, one module per group of
commands (jobs, daemon, runs), the shared options written once (options.py) and the text built
by pure functions (render.py).

Commands import the engine and the store inside their bodies, so each command loads only what
it uses: `status` must start fast (scripts/bench.py measures it).
"""

from __future__ import annotations

import sys

import click

from hermes_cron.cli import alerts, daemon, db, explain, hermes, importing, jobs, metrics, runs  # noqa: F401 - registers the commands
from hermes_cron.cli.common import cli
from hermes_cron.errors import HermesCronError


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors and documented exit codes (see README)."""
    try:
        cli.main(args=argv, prog_name="hermes-cron", standalone_mode=False)
    except HermesCronError as e:
        click.echo(f"hermes-cron: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("hermes-cron: aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        where = f" {e.ctx.command_path.split(' ', 1)[-1]}" if e.ctx and " " in e.ctx.command_path else ""
        click.echo(f"hermes-cron{where}: {e.format_message()} (see hermes-cron{where} --help)", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"hermes-cron: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as e:  # a fault of the file system or the machine: named, never a traceback
        from hermes_cron.errors import file_system_error

        where = e.filename if e.filename else "a file"
        error = file_system_error(e, f"can't use {where}")
        click.echo(f"hermes-cron: {error}", err=True)
        sys.exit(error.exit_code)
    sys.exit(0)
