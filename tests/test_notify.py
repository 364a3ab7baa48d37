"""Notifications with real processes: hook commands and webhooks received by a local HTTP server,
for failures, successes, "recovered", missed slots, `--notify-on change`, retries, the defaults
for all jobs, a hook that hangs (killed at its timeout), events that wait for the next daemon,
and an event never run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from http_receiver import Receiver, receiver  # noqa: F401  (fixture)
from conftest import cli_env, wait_for
from daemon_harness import finished
from hermes_cron.store.sqlite import SqliteStore
from test_daemon import add, daemons  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def history(cli, name: str) -> list[dict]:
    r = cli("history", name, "--json", "-n", "0")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def notifications(cli, name: str) -> list[dict]:
    return [n for run in history(cli, name) for n in run["notifications"]]


def flaky(tmp_path, fails: int) -> str:
    """A shell command that fails `fails` times, then succeeds."""
    counter = tmp_path / "count"
    return f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; " \
           f"echo attempt $n; [ $n -gt {fails} ]"


def test_failures_then_recovered_through_a_command_and_a_webhook(cli, home, daemons, receiver, tmp_path):
    out = tmp_path / "hooks"
    out.mkdir()
    hook = f"cat > {out}/$HERMES_CRON_RUN_ID.json; echo \"$HERMES_CRON_EVENT $HERMES_CRON_STATUS " \
           f"$HERMES_CRON_EXIT_CODE\" > {out}/$HERMES_CRON_RUN_ID.env"
    add(cli, "flaky", "every 1s", "sh", "-c", flaky(tmp_path, 2), on_failure=hook,
        on_success=f"echo ok >> {out}/successes", notify=f"{receiver.url}/hook")
    d = daemons()
    d.wait_started()
    wait_for(lambda: len(receiver.events()) >= 4, 20, what="four webhook events")
    assert d.stop() == 0
    events = receiver.events("/hook")
    assert events[:4] == ["failed", "failed", "recovered", "succeeded"], events
    first = receiver.bodies[0]
    assert first["type"] == "application/json"
    assert first["job"] == "flaky" and first["status"] == "failed" and first["exit_code"] == 1
    assert "attempt 1" in first["output_tail"] and first["host"] and first["scheduled"]
    # the command hook got the same facts, on stdin and in its environment
    runs = {r["id"]: r for r in history(cli, "flaky")}
    failed = sorted(r["id"] for r in runs.values() if r["status"] == "failed")[:2]
    for run_id in failed:
        given = json.loads(wait_for(lambda: (out / f"{run_id}.json").exists() and (out / f"{run_id}.json").read_text(),
                                    10, what="the hook's input"))
        assert given["run_id"] == run_id and given["event"] == "failed"
        assert (out / f"{run_id}.env").read_text().split() == ["failed", "failed", "1"]
    assert (out / "successes").read_text().count("ok") >= 2
    # each hook's own outcome is kept beside its run
    kept = notifications(cli, "flaky")
    assert {(n["event"], n["kind"]) for n in kept} >= {("failed", "command"), ("failed", "webhook"),
                                                      ("recovered", "command"), ("recovered", "webhook")}
    assert all(n["state"] == "done" and n["status"] == "ok" for n in kept), kept


def test_notify_on_change_tells_once_per_change(cli, home, daemons, receiver):
    add(cli, "broken", "every 1s", "false", notify=f"{receiver.url}/b", notify_on="change")
    d = daemons()
    d.wait_started()
    wait_for(lambda: len([r for r in finished(home, "broken")]) >= 5, 20, what="five failed runs")
    wait_for(lambda: receiver.events(), 10, what="the first event")
    assert d.stop() == 0
    assert receiver.events() == ["failed"], "a job failing every second tells once"
    assert len(finished(home, "broken")) >= 5


def test_a_hook_that_hangs_is_killed_at_its_timeout_and_recorded(cli, home, daemons, tmp_path):
    marker = tmp_path / "hung.pid"
    add(cli, "bad", "every 1h", "false", on_failure=f"echo $$ > {marker}; exec sleep 60", hook_timeout="1s")
    d = daemons()
    d.wait_started()
    assert cli("trigger", "bad").returncode == 0
    n = wait_for(lambda: [n for n in notifications(cli, "bad") if n["state"] == "done"], 20,
                 what="the hook recorded")[0]
    assert n["status"] == "timed_out" and "timeout" in n["detail"], n
    pid = int(marker.read_text())
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", 10, what="the hook killed")
    assert d.stop() == 0


def test_retried_failures_tell_only_the_slots_last_attempt(cli, home, daemons, receiver, tmp_path):
    add(cli, "retry", "every 1h", "sh", "-c", flaky(tmp_path, 2), retries="3", retry_delay="0.1s",
        notify=f"{receiver.url}/r")
    d = daemons()
    d.wait_started()
    # a scheduled slot is needed for retries: move the next run to now by a schedule that fires
    assert cli("edit", "retry", "--schedule", "every 3s").returncode == 0
    wait_for(lambda: receiver.events(), 20, what="an event")
    wait_for(lambda: len([r for r in history(cli, "retry") if r["attempt"] == 3]) >= 1, 10, what="attempt 3")
    assert d.stop() == 0
    first_slot = sorted(history(cli, "retry"), key=lambda r: r["id"])[:3]
    assert [r["status"] for r in first_slot] == ["failed", "failed", "succeeded"]
    assert receiver.bodies[0]["event"] == "succeeded" and receiver.bodies[0]["attempt"] == 3
    assert "failed" not in receiver.events(), "a failed attempt that was retried tells nobody"


def test_a_missed_slot_is_an_event(cli, home, daemons, receiver):
    add(cli, "tight", "every 2s", "true", notify=f"{receiver.url}/m", misfire_grace="1s")
    d = daemons()
    d.wait_started()
    wait_for(lambda: finished(home, "tight"), 10, what="a run")
    assert d.stop() == 0
    time.sleep(5)  # the daemon is down over at least two slots (a wait the test is about)
    d2 = daemons()
    wait_for(lambda: "missed" in receiver.events(), 15, what="the missed event")
    assert d2.stop() == 0
    body = next(b for b in receiver.bodies if b["event"] == "missed")
    assert body["status"] == "missed" and body["missed_count"] >= 1


def test_defaults_apply_to_every_job_and_a_jobs_own_setting_wins(cli, home, daemons, receiver, tmp_path):
    r = cli("defaults", "--notify", f"{receiver.url}/default", "--notify-on", "change")
    assert r.returncode == 0, r.stderr
    shown = json.loads(cli("defaults", "--json").stdout)
    assert shown["defaults"] == {"notify": [f"{receiver.url}/default"], "notify_on": "change"}
    add(cli, "plain", "every 1h", "false")
    add(cli, "own", "every 1h", "false", notify=f"{receiver.url}/own")
    d = daemons()
    d.wait_started()
    for name in ("plain", "own"):
        assert cli("trigger", name).returncode == 0
    wait_for(lambda: len(receiver.bodies) >= 2, 15, what="two events")
    assert d.stop() == 0
    assert sorted((b["path"], b["job"]) for b in receiver.bodies) == [("/default", "plain"), ("/own", "own")]
    assert cli("defaults", "--clear").returncode == 0
    assert json.loads(cli("defaults", "--json").stdout)["defaults"] == {}


def test_an_event_waits_for_the_next_daemon(cli, home, daemons, receiver):
    """A run that ended with no daemon up (here: `trigger --wait` runs it in the command) is
    told when a daemon starts: no event is lost."""
    add(cli, "lonely", "every 1h", "false", notify=f"{receiver.url}/l")
    r = cli("trigger", "lonely", "--wait")
    assert r.returncode == 1
    assert receiver.events() == []
    d = daemons()
    wait_for(lambda: receiver.events() == ["failed"], 15, what="the event sent by the next daemon")
    assert d.stop() == 0


def test_a_webhook_that_fails_is_recorded_with_the_answer(cli, home, daemons):
    bad = Receiver(status=404)
    try:
        add(cli, "x", "every 1h", "false", notify=f"{bad.url}/gone")
        d = daemons()
        d.wait_started()
        assert cli("trigger", "x").returncode == 0
        n = wait_for(lambda: [n for n in notifications(cli, "x") if n["state"] == "done"], 15, what="recorded")[0]
        assert d.stop() == 0
        assert n["status"] == "failed" and n["exit_code"] == 404 and "HTTP 404" in n["detail"], n
        assert len(bad.bodies) == 1, "a 4xx answer is not tried again"
    finally:
        bad.close()


def test_an_event_is_run_by_one_runner_only(cli, home, tmp_path):
    """Two hook runners handed the same event (a daemon restarted while the first was starting):
    the store's claim lets one run it."""
    count = tmp_path / "count"
    add(cli, "once", "every 1h", "false", on_failure=f"echo x >> {count}")
    assert cli("trigger", "once", "--wait").returncode == 1
    store = SqliteStore(home)
    try:
        from hermes_cron.engine.notifier import Notifier

        notifier = Notifier(home, _Quiet(), dict)
        notifier._launch = lambda ids: None  # note only: this test starts the runners itself
        notifier.step(store, time.time(), sweep=False)
        [event] = store.open_events()
    finally:
        store.close()
    argv = [sys.executable, "-m", "hermes_cron.engine.hookrun", "--home", home.root, str(event.id)]
    procs = [subprocess.Popen(argv, env=cli_env(home)) for _ in range(3)]
    assert [p.wait(30) for p in procs] == [0, 0, 0]
    assert count.read_text() == "x\n"
    [n] = notifications(cli, "once")
    assert n["state"] == "done" and n["status"] == "ok"


class _Quiet:
    def __getattr__(self, name):
        return lambda *a, **k: None


def test_notification_settings_are_checked(cli):
    r = cli("add", "x", "-s", "every 1h", "--notify", "ftp://host/x", "--", "true")
    assert r.returncode == 2 and "http(s)" in r.stderr
    r = cli("add", "x", "-s", "every 1h", "--hook-timeout", "2h", "--", "true")
    assert r.returncode == 2 and "hook timeout" in r.stderr
    r = cli("defaults", "--on-failure", "")
    assert r.returncode == 2 and "on-failure" in r.stderr
    assert cli("add", "x", "-s", "every 1h", "--notify", "https://hooks.example/a?token=1", "--", "true").returncode == 0
    r = cli("edit", "x", "--no-notify", "--on-failure", "logger failed")
    assert r.returncode == 0, r.stderr
    job = json.loads(cli("show", "x", "--json").stdout)
    assert job.get("notify") in (None, []) and job["on_failure"] == "logger failed"


def test_on_the_shared_store_a_lost_run_is_told_once_by_a_peer(tmp_path, pg_url, receiver):
    """Node a dies with a run going on; node b settles the run `lost` and tells of it through the
    defaults kept in the database."""
    from test_pg_store import hosts, start_long_run_on

    a, b = hosts(tmp_path, pg_url, 2)
    assert a[1]("db", "init").returncode == 0
    assert a[1]("defaults", "--notify", f"{receiver.url}/cluster").returncode == 0
    d_a = start_long_run_on(a, pg_url, tmp_path)
    from daemon_harness import DaemonProc

    d_b = DaemonProc(b[0], "--lease", "4", log_name="b.log", HERMES_CRON_STORE=pg_url, HERMES_CRON_NODE="b")
    try:
        d_b.wait_started()
        d_a.kill9()
        wait_for(lambda: "lost" in receiver.events(), 40, what="the lost event")
        assert d_b.stop() == 0
        assert receiver.events() == ["lost"]
        body = receiver.bodies[0]
        assert body["job"] == "long" and body["status"] == "lost" and "renewing" in body["reason"]
        runs = json.loads(b[1]("history", "long", "--json").stdout)
        [n] = runs[0]["notifications"]
        assert n["event"] == "lost" and n["status"] == "ok"
    finally:
        for d in (d_a, d_b):
            if d.proc.poll() is None:
                d.proc.kill()
