"""A local HTTP service for the tests that check what hermes-cron sends: dead-man's-switch pings
(the paths) and notification webhooks (the JSON bodies). Answers every request with `status`."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest


class Receiver:
    def __init__(self, status: int = 200):
        self.hits: list[tuple[float, str, str | None, bytes]] = []  # (when, path, content type, body)
        self.status = status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.hits.append((time.time(), self.path, self.headers.get("Content-Type"), body))
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self, prefix: str) -> list[str]:
        return [p for _, p, _, _ in self.hits if p.startswith(prefix)]

    @property
    def bodies(self) -> list[dict]:
        """The JSON bodies received, each with its `path` and content `type`."""
        return [{"path": p, "type": kind, **json.loads(body)} for _, p, kind, body in list(self.hits) if body]

    def events(self, path: str | None = None) -> list[str]:
        return [b["event"] for b in self.bodies if path is None or b["path"] == path]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
