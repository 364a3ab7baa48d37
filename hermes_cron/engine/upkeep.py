"""What the daemon keeps in the store's journal about itself (store/journal.py): when it started,
the last tick it was seen at, and when it stopped, so that `explain` can say a slot was missed
while no daemon was up, and from when to when. A crash leaves its row open; the next start of the
same node closes it as crashed, at the last tick seen. Failures are logged, never fatal: the
journal is for explaining, the schedule goes on without it.

On the local store the idle daemon must not touch the disk at every tick (each SQLite commit is
a flush, and a checkpoint after it): it notes each tick in `cron/.daemon_seen` (8 bytes
rewritten in place, never flushed: a crash of the process keeps it, and the next start reads it
to date the crash), and the database only with each heartbeat. On a shared store, where the
daemon talks to the database at each tick anyway, every tick is recorded there.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from hermes_cron.contract.files import open_dir, open_private
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId, host_name
from hermes_cron.errors import HermesCronError, HomeError


def node_of(cluster: Any) -> str:
    """The name the up-times are kept under: the cluster's node, or this host."""
    return cluster.node if cluster is not None else host_name()


class Upkeep:
    def __init__(self, home: Home, node: str, me: ProcId, log: Any, shared: bool):
        self.home = home
        self.node = node
        self.me = me
        self.log = log
        self.shared = shared
        self.row: int | None = None
        self._seen_fd = -1

    def opened(self, store: Any, now: float) -> None:
        """The store is open: record the start once (closing a crashed predecessor's row)."""
        if self.row is not None:
            return
        last = None if self.shared else self._last_seen()
        try:
            self.row = store.daemon_started(self.node, self.me, now, last)
        except HermesCronError as e:
            self.log.warning("journal.failed", what="start", error=str(e))

    def ticked(self, store: Any, now: float, beat: bool) -> None:
        if self.row is None:
            self.opened(store, now)
            return
        if not self.shared:
            self._note(now)
            if not beat:
                return
        try:
            store.daemon_seen(self.row, now)
        except HermesCronError as e:
            self.log.warning("journal.failed", what="tick", error=str(e))

    def stopped(self, store: Any, now: float) -> None:
        if self._seen_fd >= 0:
            os.close(self._seen_fd)
            self._seen_fd = -1
        if self.row is None or store is None:
            return
        try:
            store.daemon_stopped(self.row, now)
        except HermesCronError as e:
            self.log.warning("journal.failed", what="stop", error=str(e))

    def _note(self, now: float) -> None:
        try:
            if self._seen_fd < 0:
                folder, name = os.path.split(self.home.seen)
                dfd = open_dir(folder, 1)
                try:
                    self._seen_fd = open_private(dfd, name, os.O_RDWR | os.O_CREAT)
                finally:
                    os.close(dfd)
            os.pwrite(self._seen_fd, struct.pack("<d", now), 0)
        except (OSError, HomeError) as e:
            self.log.debug("journal.seen_failed", error=str(e))

    def _last_seen(self) -> float | None:
        try:
            folder, name = os.path.split(self.home.seen)
            dfd = open_dir(folder, 1)
            try:
                fd = open_private(dfd, name, os.O_RDONLY)
            finally:
                os.close(dfd)
            try:
                data = os.pread(fd, 8, 0)
            finally:
                os.close(fd)
            return struct.unpack("<d", data)[0] if len(data) == 8 else None
        except (OSError, HomeError, struct.error):
            return None
