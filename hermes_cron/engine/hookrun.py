"""The hook runner: `python -m hermes_cron.engine.hookrun --home H [--store URL] EVENT_ID...`, a
process of its own the daemon starts (engine/notifier.py) and never waits for.

For each event it claims in the store (pending -> running, conditioned: an event is run by at
most one runner, ever), it runs the hook with the event's timeout, and records the outcome:
- a command: `/bin/sh -c CMD` in a session of its own, the facts as JSON on stdin and as
  HERMES_CRON_* variables; at its timeout the group gets SIGTERM, then SIGKILL 5 s later;
  `ok` for exit 0, else `failed` (with its exit code) or `timed_out`; its output's tail is kept;
- a webhook: a JSON POST (no redirect followed); `ok` for a 2xx answer; a connection failure, a
  5xx or 429 is tried again (3 tries) while the timeout allows; else `failed` with the answer.
The events run side by side, each in a thread.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId, host_name
from hermes_cron.errors import HermesCronError

KILL_AFTER = 5.0
DETAIL = 2000
TRIES = 3


def environment(facts: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_CRON_")}
    for key, value in facts.items():
        if key != "home":
            env[f"HERMES_CRON_{key.upper()}"] = "" if value is None else str(value).replace("\0", "")
    env["HERMES_CRON_HOME"] = str(facts.get("home") or "")
    return env


def run_command(command: str, body: str, timeout: float, cwd: str) -> tuple[str, int | None, str]:
    facts = json.loads(body)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, cwd=cwd,
                                env=environment(facts))
    except OSError as e:
        return "failed", None, f"can't start /bin/sh: {e}"
    tail = bytearray()

    def feed() -> None:
        try:
            proc.stdin.write(body.encode())  # type: ignore[union-attr]
        except OSError:
            pass  # a hook that doesn't read its input
        finally:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass

    def drain() -> None:
        while True:
            chunk = proc.stdout.read1(65536)  # type: ignore[union-attr]
            if not chunk:
                return
            tail.extend(chunk)
            del tail[:-DETAIL]

    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    try:
        code = proc.wait(timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(KILL_AFTER)
        except subprocess.TimeoutExpired:
            _kill(proc.pid, signal.SIGKILL)
            code = proc.wait()
    _kill(proc.pid, signal.SIGKILL)  # what it left behind in its group
    threads[1].join(1.0)
    out = tail.decode("utf-8", "replace")
    if timed_out:
        return "timed_out", code, f"killed at its timeout ({timeout:g} s)" + (f"; output: {out}" if out else "")
    if code == 0:
        return "ok", 0, out
    if code < 0:
        return "failed", None, f"killed by {signal.Signals(-code).name}" + (f"; output: {out}" if out else "")
    return "failed", code, out


def _kill(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass




def post(url: str, body: str, timeout: float) -> tuple[str, int | None, str]:
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    deadline = time.monotonic() + timeout
    why = ""
    for attempt in range(TRIES):
        left = deadline - time.monotonic()
        if left <= 0.2:
            break
        req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "hermes-cron"})
        try:
            with opener.open(req, timeout=left) as r:
                answer = r.read(DETAIL).decode("utf-8", "replace")
                return "ok", r.status, f"HTTP {r.status}" + (f": {answer}" if answer else "")
        except urllib.error.HTTPError as e:
            answer = e.read(DETAIL).decode("utf-8", "replace") if e.fp else ""
            why = f"HTTP {e.code}" + (f": {answer}" if answer else "")
            if e.code < 500 and e.code != 429:
                return "failed", e.code, why
        except (OSError, ValueError) as e:  # refused, unreachable, timed out, a bad answer
            why = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
        if attempt + 1 < TRIES:
            time.sleep(min(2.0 ** attempt, max(0.0, deadline - time.monotonic() - 0.5)))
    return "failed", None, f"{why} (after {attempt + 1} tries)" if why else "no time left to send it"


def run_event(event: Any) -> tuple[str, int | None, str]:
    try:
        if event.kind == "command":
            return run_command(event.target, event.payload, event.timeout, os.path.expanduser("~") or "/")
        return post(event.target, event.payload, event.timeout)
    except Exception as e:  # noqa: BLE001 - recorded as the hook's outcome, never left running
        return "failed", None, f"{type(e).__name__}: {e}"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="hermes-cron hook runner")
    parser.add_argument("--home", required=True)
    parser.add_argument("--store")
    parser.add_argument("ids", nargs="+", type=int)
    args = parser.parse_args(argv)
    from hermes_cron.store.opening import open_store

    home = Home(args.home, args.store)
    me, host = ProcId.me(), host_name()
    store = open_store(home)
    try:
        mine = [e for e in store.events(args.ids) if e.state == "pending" and store.claim_event(e.id, host, me, time.time())]
        done: queue.SimpleQueue = queue.SimpleQueue()
        for e in mine:
            threading.Thread(target=lambda e=e: done.put((e, run_event(e))), daemon=True).start()
        for _ in mine:
            e, (status, code, detail) = done.get()
            store.end_event(e.id, me, time.time(), status, code, detail[-DETAIL:] if detail else None)
    except HermesCronError as e:
        print(f"hermes-cron hook runner: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
