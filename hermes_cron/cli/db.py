"""`hermes-cron db init|migrate|status`: the shared PostgreSQL store's versioned schema."""

from __future__ import annotations

import click

from hermes_cron.cli.common import _ctx, _home_option, cli
from hermes_cron.errors import InvalidInput


def _url() -> str:
    url = _ctx().home.store
    if url is None:
        raise InvalidInput("no shared store given: use --store postgresql://... or HERMES_CRON_STORE")
    return url


@cli.group()
def db() -> None:
    """The shared PostgreSQL store's schema."""


@db.command()
@_home_option
def init() -> None:
    """Create the schema in an empty database (a no-op on one that has it)."""
    from hermes_cron.store.pg_db import PgDatabase, shown

    d = PgDatabase(_url(), check=False)
    try:
        before, after = d.migrate(init=True)
    finally:
        d.close()
    click.echo(f"{shown(_url())}: schema {after}" + (" created" if before == 0 else
                                                     " already there" if before == after else f" (was {before})"))


@db.command()
@_home_option
def migrate() -> None:
    """Bring the schema up to this release's version."""
    from hermes_cron.store.pg_db import PgDatabase, shown

    d = PgDatabase(_url(), check=False)
    try:
        before, after = d.migrate(init=False)
    finally:
        d.close()
    click.echo(f"{shown(_url())}: schema {after}" + ("" if before == after else f" (migrated from {before})"))


@db.command("status")
@_home_option
def db_status() -> None:
    """The schema version of the store, and the one this release knows."""
    from hermes_cron.store.pg_db import SCHEMA_VERSION, PgDatabase, shown

    d = PgDatabase(_url(), check=False)
    try:
        version = d.schema_version()
    finally:
        d.close()
    click.echo(f"{shown(_url())}: schema {version or 'none'}; this hermes-cron knows {SCHEMA_VERSION}")


@db.command("import")
@_home_option
def import_() -> None:
    """Copy this home's local jobs, schedule state and history into the shared store."""
    from hermes_cron.app.cluster import import_home
    from hermes_cron.store.pg_db import shown

    home = _ctx().home
    _url()
    jobs, runs = import_home(home)
    click.echo(f"copied {jobs} job(s) and {runs} finished run(s) from {home.root} to {shown(home.store or '')}; "
               f"the local job file is kept as {home.jobs}.imported. Start the daemon with --store (or "
               "HERMES_CRON_STORE) now.")
