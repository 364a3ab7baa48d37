"""Opening the store a home is configured with: the files in the home (SQLite, the default), or
the shared PostgreSQL store its `store` URL names (a command is then a client of the cluster,
acting as this host's node for the runs it starts itself)."""

from __future__ import annotations

import os

from hermes_cron.contract.paths import Home


def open_store(home: Home, busy_timeout: float = 5.0, manual_checkpoints: bool = False):  # -> base.Store
    if home.store is None:
        from hermes_cron.store.sqlite import SqliteStore

        return SqliteStore(home, busy_timeout, manual_checkpoints)
    from hermes_cron.store.pg_nodes import node_name
    from hermes_cron.store.postgres import PgStore

    return PgStore(home, node_name(home))


def has_state(home: Home) -> bool:
    """Whether there is schedule state to read (a shared store always has its tables)."""
    return home.store is not None or os.path.exists(home.state)
