"""What the daemon keeps in the store's journal about itself (store/journal.py): when it started,
the last tick it was seen at, and when it stopped, so that `explain` can say a slot was missed
while no daemon was up, and from when to when. A crash leaves its row open; the next start of the
same node closes it as crashed, at the last tick seen. Failures are logged, never fatal: the
journal is for explaining, the schedule goes on without it."""

from __future__ import annotations

import socket
from typing import Any

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.errors import HermesCronError


def node_of(home: Any, cluster: Any) -> str:
    """The name the up-times are kept under: the cluster's node, or this host."""
    return cluster.node if cluster is not None else socket.gethostname()


class Upkeep:
    def __init__(self, node: str, me: ProcId, log: Any):
        self.node = node
        self.me = me
        self.log = log
        self.row: int | None = None

    def opened(self, store: Any, now: float) -> None:
        """The store is open: record the start once."""
        if self.row is not None:
            return
        try:
            self.row = store.daemon_started(self.node, self.me, now)
        except HermesCronError as e:
            self.log.warning("journal.failed", what="start", error=str(e))

    def ticked(self, store: Any, now: float) -> None:
        if self.row is None:
            self.opened(store, now)
            return
        try:
            store.daemon_seen(self.row, now)
        except HermesCronError as e:
            self.log.warning("journal.failed", what="tick", error=str(e))

    def stopped(self, store: Any, now: float) -> None:
        if self.row is None or store is None:
            return
        try:
            store.daemon_stopped(self.row, now)
        except HermesCronError as e:
            self.log.warning("journal.failed", what="stop", error=str(e))
