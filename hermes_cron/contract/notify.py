"""sd_notify(3), spoken directly over $NOTIFY_SOCKET: a dozen lines beat a dependency.
Without systemd (no NOTIFY_SOCKET) every call is a no-op."""

from __future__ import annotations

import os
from typing import Callable


def notify(message: str | Callable[[], str]) -> bool:
    """Send `message` (e.g. "READY=1\\nSTATUS=...") to systemd; False if not under systemd.
    A callable is called for the message only under systemd (a tick's status line is worked out
    only where someone reads it)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if callable(message):
        message = message()
    import socket

    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
        return True
    except OSError:
        return False
