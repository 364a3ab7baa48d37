"""`hermes-cron metrics` parsed with the Prometheus parser and checked against `history`, and
`hermes-cron serve`'s /metrics, /healthz and /readyz, with a real daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import cli_env, wait_for
from daemon_harness import finished
from test_daemon import add, daemons  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, name: str, **labels) -> float | None:
    for fam in fams.values():
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_metrics_agree_with_history(cli, home, daemons):
    add(cli, "ok", "every 1s", "true")
    add(cli, "bad", "every 1s", "false")
    d = daemons()
    d.wait_started()
    wait_for(lambda: len(finished(home, "ok")) >= 4 and len(finished(home, "bad")) >= 4, 20, what="runs")
    # the daemon's own figures come with its heartbeat (every 5 ticks)
    live = wait_for(lambda: (f := families(cli("metrics").stdout)) and
                    (value(f, "hermes_cron_fire_latency_seconds_count") or 0) >= 1 and f, 20, what="a heartbeat")
    assert value(live, "hermes_cron_up") == 1.0
    assert value(live, "hermes_cron_heartbeat_age_seconds") is not None
    assert value(live, "hermes_cron_lock_hold_seconds_count") >= 1
    assert value(live, "hermes_cron_fire_latency_seconds_count") >= 1
    assert value(live, "hermes_cron_job_next_run_timestamp_seconds", job="ok") is not None
    assert cli("pause", "ok").returncode == 0 and cli("pause", "bad").returncode == 0
    wait_for(lambda: not json.loads(cli("status", "--json").stdout)["in_flight"], 10, what="no run in flight")
    assert d.stop() == 0
    fams = families(cli("metrics").stdout)
    history = json.loads(cli("history", "--json", "--limit", "0").stdout)
    for job in ("ok", "bad"):
        for outcome in ("succeeded", "failed"):
            n = sum(1 for r in history if r["job"] == job and r["status"] == outcome)
            assert (value(fams, "hermes_cron_job_runs_total", job=job, outcome=outcome) or 0) == n, (job, outcome)
    last_ok = max(r["ended_at"] for r in history if r["job"] == "ok" and r["status"] == "succeeded")
    from datetime import datetime

    assert abs(value(fams, "hermes_cron_job_last_success_timestamp_seconds", job="ok")
               - datetime.fromisoformat(last_ok.replace("Z", "+00:00")).timestamp()) < 0.01
    assert value(fams, "hermes_cron_up") == 0.0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_serve_answers_metrics_health_and_readiness(cli, home, daemons):
    add(cli, "ok", "every 1s", "true")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "hermes_cron", "serve", "--listen", f"127.0.0.1:{port}"],
                              env=cli_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(base), 15, what="serve listening")
        assert get(base + "/healthz")[0] == 503 and get(base + "/readyz")[0] == 503  # no daemon yet
        d = daemons()
        d.wait_started()
        wait_for(lambda: get(base + "/readyz")[0] == 200, 15, what="ready")
        assert get(base + "/healthz") == (200, "ok\n")
        code, text = get(base + "/metrics")
        assert code == 200 and value(families(text), "hermes_cron_up") == 1.0
        assert get(base + "/nothing")[0] == 404
        req = urllib.request.Request(base + "/metrics", method="POST", data=b"x")
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("POST accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 405
        assert d.stop() == 0
        wait_for(lambda: get(base + "/healthz")[0] == 503, 10, what="not alive once stopped")
    finally:
        server.terminate()
        server.wait(10)


def _up(base: str) -> bool:
    try:
        get(base + "/healthz")
        return True
    except OSError:
        return False
