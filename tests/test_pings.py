"""Dead-man's-switch pings (Healthchecks.io's conventions) received by a local HTTP server: the
exact sequence for a success, a failure, a timeout, and a daemon killed with -9 between a run's
start and its end; and the daemon's own ping per tick."""

from __future__ import annotations


import pytest

from http_receiver import receiver  # noqa: F401  (fixture)
from conftest import wait_for
from daemon_harness import finished
from test_daemon import add, daemons  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def pairs(paths: list[str]) -> dict[str, list[str]]:
    """The pings of each run (by rid), in order."""
    out: dict[str, list[str]] = {}
    for p in paths:
        path, _, rid = p.partition("?rid=")
        out.setdefault(rid, []).append(path)
    return out


def test_the_sequences_of_success_failure_and_timeout(cli, home, daemons, receiver):
    add(cli, "ok", "every 1s", "true", ping=f"{receiver.url}/ok")
    add(cli, "bad", "every 1s", "sh", "-c", "exit 3", ping=f"{receiver.url}/bad")
    add(cli, "slow", "every 2s", "sleep", "5", ping=f"{receiver.url}/slow", timeout="0.5s", kill_grace="0.2s")
    d = daemons("--ping", f"{receiver.url}/daemon")
    d.wait_started()
    wait_for(lambda: len(finished(home, "slow")) >= 2 and len(finished(home, "bad")) >= 2, 20, what="runs")
    assert d.stop() == 0  # the daemon sends what it queued before it exits
    for name, end in (("ok", "/ok"), ("bad", "/bad/3"), ("slow", "/slow/fail")):
        runs = pairs(receiver.paths(f"/{name}"))
        done = [seq for seq in runs.values() if len(seq) == 2]
        assert len(done) >= 2, runs
        assert all(seq == [f"/{name}/start", end] for seq in done), runs
        assert all(len(rid) == 36 for rid in runs)
    assert len(receiver.paths("/daemon")) >= 2, "the daemon pings per tick"
    assert not [p for p in receiver.paths("/bad") if p.split("?")[0] == "/bad"], "never a bare ping for a failure"


def test_a_run_outlives_kill_9_and_its_end_is_pinged_by_the_next_daemon(cli, home, daemons, receiver):
    add(cli, "long", "every 1h", "sleep", "2", ping=f"{receiver.url}/long")
    d = daemons()
    d.wait_started()
    assert cli("trigger", "long").returncode == 0
    wait_for(lambda: receiver.paths("/long/start"), 10, what="the start ping")
    d.kill9()
    d2 = daemons()
    d2.wait_started()
    wait_for(lambda: [p for p in receiver.paths("/long") if not p.startswith("/long/start")], 15,
             what="the end ping from the next daemon")
    [seq] = pairs(receiver.paths("/long")).values()
    assert seq == ["/long/start", "/long"]
    assert d2.stop() == 0


def test_ping_urls_are_checked(cli):
    r = cli("add", "x", "-s", "every 1h", "--ping", "ftp://host/x", "--", "true")
    assert r.returncode == 2 and "http(s)" in r.stderr
    r = cli("add", "x", "-s", "every 1h", "--ping", "https://hc-ping.com/abc?x=1", "--", "true")
    assert r.returncode == 2
