"""Policies decided from durable state: overlap, misfire, timeout, @reboot, restarts, limits."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import wait_for
from daemon_harness import pid_alive, runs
from hermes_cron.logic.settle import Token
from hermes_cron.store.runfiles import RunFiles
from hermes_cron.store.sqlite import SqliteStore
from test_daemon import add, daemons  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def test_overlap_replace_stops_the_running_one_first(cli, home, daemons):
    add(cli, "rep", "every 2s", "sleep", "30", overlap="replace", kill_grace="1s")
    d = daemons()
    d.wait_event("job.finished", job="rep", timeout=15)
    got = runs(home, "rep")
    first = got[0]
    assert first.outcome == "interrupted" and "replaced by run" in first.reason
    assert any(r.state != "done" for r in got[1:]), "a new run took its place"
    assert d.stop() == 0


def test_overlap_allow_runs_side_by_side(cli, home, daemons):
    add(cli, "par", "every 1s", "sleep", "2.5", overlap="allow")
    d = daemons()
    wait_for(lambda: len([r for r in runs(home, "par") if r.state == "running"]) >= 2, 10,
             what="two runs at once")
    assert not [r for r in runs(home, "par") if r.outcome == "skipped"]
    assert d.stop() == 0


def test_timeout_terms_then_kills_the_whole_group(cli, home, daemons, tmp_path):
    child_pid_file = tmp_path / "child.pid"
    add(cli, "stubborn", "every 1h", "sh", "-c",
        f"trap '' TERM; sleep 60 & echo $! > {child_pid_file}; wait", timeout="1s", kill_grace="1s")
    d = daemons()
    d.wait_started()
    cli("trigger", "stubborn", check=True)
    d.wait_event("job.finished", job="stubborn", timeout=15)
    run = runs(home, "stubborn")[-1]
    assert run.outcome == "timed_out" and run.signal == signal.SIGKILL
    assert 1.8 < run.duration < 5
    child = int(child_pid_file.read_text())
    wait_for(lambda: not pid_alive(child), 5, what="the job's child to be killed with its group")
    assert d.stop() == 0


def test_misfire_after_downtime_runs_newest_once_and_records_the_rest(cli, home, daemons):
    add(cli, "sec", "* * * * * *", "true", misfire_grace="3s")
    add(cli, "strict", "every 2s", "true", misfire_grace="1s")
    d = daemons()
    d.wait_event("job.finished", job="sec", count=2)
    assert d.stop() == 0
    stopped = time.time()
    time.sleep(5.5)
    d2 = daemons()
    d2.wait_event("job.missed", job="sec")
    missed = [r for r in runs(home, "sec") if r.outcome == "missed"]
    assert len(missed) == 1 and missed[0].missed_count >= 4, "one record with the count"
    catchup = [r for r in runs(home, "sec") if r.scheduled and r.scheduled > stopped and r.outcome != "missed"]
    assert catchup and catchup[0].scheduled <= catchup[0].claimed_at, "never before its time"
    slots = [r.scheduled for r in runs(home, "sec") if r.outcome != "missed"]
    assert len(slots) == len(set(slots))
    assert d2.stop() == 0


def test_reboot_job_runs_once_per_boot(cli, home, daemons):
    add(cli, "boot", "@reboot", "true")
    d = daemons()
    d.wait_event("tick", count=2, counted=True)
    assert d.stop() == 0
    assert runs(home, "boot") == [], "added during this boot: first run at the next boot"
    store = SqliteStore(home)  # as if the job last ran in an earlier boot
    with store.tick() as tx:
        tx.mark_rebooted("boot", "an-earlier-boot")
    store.close()
    d2 = daemons()
    d2.wait_event("job.finished", job="boot")
    assert d2.stop() == 0
    d3 = daemons()
    d3.wait_event("tick", count=3, counted=True)
    assert d3.stop() == 0
    got = runs(home, "boot")
    assert len(got) == 1 and got[0].trigger == "reboot" and got[0].outcome == "succeeded"


def test_claimed_but_never_started_is_started_by_the_next_daemon(cli, home, daemons):
    add(cli, "job", "every 1h", "true")
    d = daemons(faults="dispatch.claimed=sleep:30")
    d.wait_started()
    cli("trigger", "job", check=True)  # the daemon claims it, then stalls before starting it
    wait_for(lambda: runs(home, "job") and runs(home, "job")[-1].state == "claimed", what="the claim")
    d.kill9()
    d2 = daemons()
    adopted = d2.wait_event("job.adopted", job="job")[0]
    assert adopted["action"] == "start"
    d2.wait_event("job.finished", job="job")
    got = runs(home, "job")
    assert len(got) == 1 and got[0].outcome == "succeeded"
    assert d2.stop() == 0


def test_claimed_too_long_ago_is_marked_not_dropped(cli, home, daemons):
    add(cli, "job", "every 1h", "true", misfire_grace="1s")
    d = daemons(faults="dispatch.claimed=sleep:30")
    d.wait_started()
    cli("trigger", "job", check=True)
    wait_for(lambda: runs(home, "job") and runs(home, "job")[-1].state == "claimed", what="the claim")
    d.kill9()
    time.sleep(1.5)
    d2 = daemons()
    wait_for(lambda: runs(home, "job")[-1].state == "done", what="the claim to be settled")
    run = runs(home, "job")[-1]
    assert run.outcome == "interrupted" and "died before starting it" in run.reason
    assert d2.stop() == 0


@pytest.mark.parametrize("command", ["pause", "remove"])
def test_pause_or_remove_holds_for_a_slot_already_claimed(cli, home, daemons, tmp_path, command):
    """The daemon claims a slot a moment before it comes. A pause (or a removal) that returns
    in that moment still holds: the claimed run is cancelled, never started."""
    marker = tmp_path / "ran"
    add(cli, "job", "every 2s", "sh", "-c", f"echo $HERMES_CRON_RUN_ID >> {marker}")
    d = daemons(faults="dispatch.claimed=sleep:2")  # a wide gap between claim and start
    d.wait_started()
    claimed = wait_for(lambda: [r for r in runs(home, "job") if r.state == "claimed"], 10, what="a claim")[0]
    r = cli(command, "job")
    assert r.returncode == 0, r.stderr
    d.wait_event("job.handed", run_id=claimed.id)  # the daemon handed it to a supervisor...
    run = wait_for(lambda: [x for x in runs(home) if x.id == claimed.id and x.state == "done"], 10)[0]
    assert run.outcome == "skipped" and run.reason == f"job {command}d before it started", run
    token = RunFiles(home.run_dir("job", run.id)).read_token()
    assert token == (Token.CANCELLED, f"job {command}d")  # ...which found the start taken: never started
    if command == "pause":  # a manual run still works, and is the only one that ran
        r = cli("trigger", "job", "--wait")
        assert r.returncode == 0, r.stderr
        assert marker.read_text().split() == [str(runs(home, "job")[-1].id)]
    else:
        assert not marker.exists()
    assert d.stop() == 0


def _handed_over_not_started(cli, home, daemons, marker):
    """A run handed to its supervisor, which has not started the job yet (as in the moment
    between a claim made ahead of its slot and the slot): the fault holds the supervisor."""
    add(cli, "job", "every 1h", "sh", "-c", f"echo $HERMES_CRON_RUN_ID >> {marker}")
    d = daemons(faults="supervisor.start=sleep:3")
    d.wait_started()
    cli("trigger", "job", check=True)
    run = wait_for(lambda: [r for r in runs(home, "job") if r.state == "handed" and r.supervisor_pid], 10,
                   what="the run handed to its supervisor")[0]
    assert not os.path.exists(os.path.join(home.run_dir("job", run.id), "start"))
    return d, run


def test_stop_jobs_cancels_a_run_whose_supervisor_waits_for_its_slot(cli, home, daemons, tmp_path):
    marker = tmp_path / "ran"
    d, run = _handed_over_not_started(cli, home, daemons, marker)
    r = cli("stop", "--jobs")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: not pid_alive(run.supervisor_pid), 10, what="the supervisor to give up the run")
    got = runs(home, "job")[-1]
    assert (got.id, got.outcome) == (run.id, "interrupted") and got.reason.endswith("before it started"), got
    assert not marker.exists(), "the job started after its run was recorded as stopped"


def test_new_daemon_watches_a_supervisor_waiting_for_its_slot(cli, home, daemons, tmp_path):
    marker = tmp_path / "ran"
    d, run = _handed_over_not_started(cli, home, daemons, marker)
    d.kill9()
    d2 = daemons()
    adopted = d2.wait_event("job.adopted", job="job")[0]
    assert adopted["action"] == "watch" and adopted["supervisor_pid"] == run.supervisor_pid
    d2.wait_event("job.finished", job="job", timeout=15)
    got = runs(home, "job")[-1]
    assert (got.id, got.outcome) == (run.id, "succeeded"), got
    assert marker.read_text().split() == [str(run.id)]
    assert d2.stop() == 0


def test_replace_cancels_a_run_whose_supervisor_waits_for_its_slot(cli, home, daemons, tmp_path):
    marker = tmp_path / "ran"
    add(cli, "job", "every 1h", "sh", "-c", f"echo $HERMES_CRON_RUN_ID >> {marker}", overlap="replace")
    d = daemons(faults="supervisor.start=sleep:2")
    d.wait_started()
    cli("trigger", "job", check=True)
    first = wait_for(lambda: [r for r in runs(home, "job") if r.state == "handed" and r.supervisor_pid], 10,
                     what="the run handed to its supervisor")[0]
    cli("trigger", "job", check=True)
    d.wait_event("job.finished", job="job", status="succeeded", timeout=15)
    got = {r.id: r for r in runs(home, "job")}
    assert got[first.id].outcome == "interrupted", got[first.id]
    assert got[first.id].reason == f"replaced by run {first.id + 1} before it started"
    assert marker.read_text().split() == [str(first.id + 1)]
    assert d.stop() == 0


def test_orphaned_job_is_adopted_when_its_supervisor_dies_too(cli, home, daemons):
    add(cli, "orphan", "every 1h", "sleep", "3")
    d = daemons()
    d.wait_started()
    cli("trigger", "orphan", check=True)
    d.wait_event("job.started", job="orphan")
    run = wait_for(lambda: runs(home, "orphan")[-1].supervisor_pid and runs(home, "orphan")[-1])
    job_pid_file = os.path.join(home.run_dir("orphan", run.id), "job.pid")
    wait_for(lambda: os.path.exists(job_pid_file))
    d.kill9()
    os.kill(run.supervisor_pid, signal.SIGKILL)
    d2 = daemons()
    adopted = d2.wait_event("job.adopted", job="orphan")[0]
    assert adopted["action"] == "watch-orphan"
    d2.wait_event("job.finished", job="orphan", timeout=10)
    done = runs(home, "orphan")[-1]
    assert done.outcome == "interrupted" and "can't be known" in done.reason
    assert d2.stop() == 0


def test_max_concurrent_queues_the_rest(cli, home, daemons):
    for name in ("a", "b", "c"):
        add(cli, name, "every 1s", "sleep", "1.5", overlap="allow")
    d = daemons("--max-concurrent", "2")
    d.wait_event("job.finished", count=6, timeout=20)
    assert d.stop() == 0
    intervals = [(r.started_at, r.ended_at) for r in runs(home) if r.started_at and r.ended_at]
    for t, _ in intervals:
        at_once = sum(1 for s, e in intervals if s <= t + 0.01 and e > t + 0.05)
        assert at_once <= 2


def test_output_is_capped_keeping_head_and_tail(cli, home, daemons):
    add(cli, "chatty", "every 1h", "python3", "-c",
        "import sys; sys.stdout.write('HEAD' + 'x' * 3_000_000 + 'TAIL'); sys.stdout.flush()",
        output_cap="64K")
    d = daemons()
    d.wait_started()
    cli("trigger", "chatty", check=True)
    d.wait_event("job.finished", job="chatty")
    run = runs(home, "chatty")[-1]
    data = open(run.output, "rb").read()
    assert len(data) <= 64 * 1024
    assert data.startswith(b"HEADxxx") and data.endswith(b"xxxTAIL")
    assert b"hermes-cron:" in data and b"bytes omitted" in data
    assert run.output_bytes == 3_000_008
    assert d.stop() == 0


def test_job_environment_and_working_directory(cli, home, daemons, tmp_path):
    add(cli, "envy", "every 1h", "sh", "-c", 'echo "$GREETING $HERMES_CRON_JOB $(pwd)"',
        env="GREETING=hello", cwd=str(tmp_path))
    d = daemons()
    d.wait_started()
    cli("trigger", "envy", check=True)
    d.wait_event("job.finished", job="envy")
    out = open(runs(home, "envy")[-1].output).read()
    assert out.strip() == f"hello envy {tmp_path}"
    assert d.stop() == 0


def test_heartbeat_file_and_events(cli, home, daemons):
    d = daemons("--heartbeat-every", "2")
    d.wait_event("heartbeat", count=3)
    hb = json.load(open(home.heartbeat))
    for key in ("time", "pid", "pid_start", "boot_id", "ticks", "interval_s", "last_ok_tick", "last_error"):
        assert key in hb
    assert hb["pid"] == d.pid and hb["interval_s"] == 2.0 and hb["last_error"] is None
    assert open("/proc/sys/kernel/random/boot_id").read().strip() == hb["boot_id"]
    events = d.events("heartbeat")
    assert all(e["level"] == "info" and "uptime_s" in e and "running" in e for e in events)
    ticks = [e["ticks"] for e in events]
    assert ticks[1:] == list(range(2, 2 * len(ticks), 2)), ticks
    assert d.stop() == 0


def test_edits_made_while_a_run_is_in_flight_survive_its_recording(cli, home, daemons):
    add(cli, "slowpoke", "every 1h", "sleep", "1.5")
    d = daemons()
    d.wait_started()
    cli("trigger", "slowpoke", check=True)
    d.wait_event("job.started", job="slowpoke")
    cli("edit", "slowpoke", "--timeout", "42s", check=True)
    cli("add", "newcomer", "-s", "@daily", "--", "true", check=True)
    d.wait_event("job.finished", job="slowpoke")
    jobs = {j["name"]: j for j in json.load(open(home.jobs))["jobs"]}
    assert jobs["slowpoke"]["timeout"] == 42 and "newcomer" in jobs
    assert d.stop() == 0
