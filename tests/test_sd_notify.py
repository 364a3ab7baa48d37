"""sd_notify over a real datagram socket: the message arrives; without systemd nothing is sent
and a message given as a callable is not even worked out."""

from __future__ import annotations

import socket

from hermes_cron.contract.notify import notify


def test_a_message_reaches_the_notify_socket_and_is_worked_out_only_there(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert notify("READY=1")
        assert sock.recv(4096) == b"READY=1"
        assert notify(lambda: "WATCHDOG=1\nSTATUS=3 ticks")
        assert sock.recv(4096) == b"WATCHDOG=1\nSTATUS=3 ticks"
    monkeypatch.delenv("NOTIFY_SOCKET")
    called = []
    assert not notify(lambda: called.append(1) or "STATUS=x")
    assert called == [], "no systemd: the status line is not worked out"
