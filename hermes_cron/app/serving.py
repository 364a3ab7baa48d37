"""`hermes-cron serve`: a small read-only HTTP server, a process of its own (the daemon never
serves): /metrics (app/metrics.py), /healthz (200 while the daemon is alive: verified pid and a
heartbeat that moves), /readyz (200 while it is healthy: its last tick succeeded)."""

from __future__ import annotations

import os
import signal
import socket
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hermes_cron.contract.paths import Home


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        return None


class _Server(WSGIServer):
    def server_bind(self) -> None:
        if ":" in self.server_address[0]:
            self.address_family = socket.AF_INET6
            self.socket = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        super().server_bind()


def app(home: Home):
    def handle(environ, start_response):
        from hermes_cron.app.control import status_report

        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain")])
            return [b"read-only\n"]
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            from hermes_cron.app.metrics import exposition

            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [exposition(home)]
        if path in ("/healthz", "/readyz"):
            report, _ = status_report(home)
            alive = report["running"] and report["heartbeat_age_s"] is not None and not report["heartbeat_stale"]
            ok = alive if path == "/healthz" else report["healthy"]
            why = "ok" if ok else (report.get("unhealthy_reason") or ("not running" if not report["running"]
                                                                     else "no fresh heartbeat"))
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"{why}\n".encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/metrics, /healthz or /readyz\n"]

    return handle


def serve(home: Home, host: str, port: int, say: Callable[[str], None]) -> None:
    server = make_server(host, port, app(home), server_class=_Server, handler_class=_Quiet)
    # Read-only, nothing to save: SIGTERM ends it at once, even in the middle of a request.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    say(f"http://{host}:{server.server_port}/metrics")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
