"""Dead-man's-switch pings, in the conventions of Healthchecks.io: `URL/start` when a run starts,
`URL` when it succeeds, `URL/<exit code>` when it exits non-zero, `URL/fail` when it ends any
other way (a timeout, a signal, a stop, lost with its host) -- never the bare URL for a failure,
the well-known pitfall that reports a failed run as fine. Each carries `?rid=` (a UUID made from
the home and the run id, the same for a run's start and end), so the service pairs them and
notices a run that started and never ended. A daemon-level URL (`run --ping`) gets a ping per
successful tick.

Pings never delay a start: they go out after it, from one background thread, with a short
timeout and a bounded retry, and a failure is logged, never raised.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

# urllib.request and uuid are imported where they are used: the daemon imports this module, and
# they cost it 5 MB of memory (email, http.client, ...) when no job pings.

TIMEOUT = 5.0
TRIES = 3
BACKOFF = (1.0, 3.0)


def run_uuid(home_root: str, run_id: int) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hermes-cron:{home_root}:{run_id}"))


def end_suffix(outcome: str, exit_code: int | None) -> str | None:
    """What a run's end adds to its URL; None for a run that never ran (skipped, missed)."""
    if outcome == "succeeded":
        return ""
    if outcome in ("skipped", "missed"):
        return None
    if outcome == "failed" and exit_code is not None and 0 < exit_code < 256:
        return f"/{exit_code}"
    return "/fail"


class Pinger:
    def __init__(self, log: Any):
        self.log = log
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.pending = 0
        self.lock = threading.Lock()

    def send(self, url: str, what: str) -> None:
        """Queue one ping (returns at once)."""
        with self.lock:
            self.pending += 1
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="pinger", daemon=True)
                self.thread.start()
        self.q.put((url, what))

    def started(self, base: str, home_root: str, run_id: int) -> None:
        self.send(f"{base}/start?rid={run_uuid(home_root, run_id)}", "start")

    def ended(self, base: str, home_root: str, run_id: int, outcome: str, exit_code: int | None) -> None:
        suffix = end_suffix(outcome, exit_code)
        if suffix is not None:
            self.send(f"{base}{suffix}?rid={run_uuid(home_root, run_id)}", outcome)

    def flush(self, timeout: float = 15.0) -> None:
        """Wait (bounded) for the queued pings: a command about to exit sends what it queued."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.02)

    def _loop(self) -> None:
        while True:
            url, what = self.q.get()
            try:
                self._deliver(url, what)
            finally:
                with self.lock:
                    self.pending -= 1

    def _deliver(self, url: str, what: str) -> None:
        import urllib.request

        for attempt in range(TRIES):
            try:
                req = urllib.request.Request(url, method="POST", data=b"", headers={"User-Agent": "hermes-cron"})
                with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
                    r.read(1024)
                return
            except Exception as e:  # noqa: BLE001 - a ping that fails is logged, never fatal
                if attempt + 1 == TRIES:
                    self.log.warning("ping.failed", url=_shown(url), what=what, error=str(e)[:200])
                    return
                time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])


def _shown(url: str) -> str:
    return url.split("?", 1)[0]
