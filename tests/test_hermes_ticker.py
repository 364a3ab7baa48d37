"""hermes-cron as the ticker of the real Hermes agent's own jobs (hermes-agent from PyPI, in its
own venv): Hermes's jobs, made with `hermes cron create`, run at their slots through Hermes's own
execution path; Hermes's records show each run once; its one-shots retire; its pause and resume
hold; its own `hermes cron tick` at the same moment never makes a slot run twice; a run outlives
kill -9 of our daemon; a timeout or a kill settles Hermes's own records."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from conftest import wait_for
from daemon_harness import finished, runs
from hermes_agent import hermes
from hermes_home import create, enable, epoch, executions, hermes_job, hermes_python, script
from test_daemon import add, daemons  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

STAMP = 'echo "$(date +%s.%N)" >> "$HERMES_HOME/stamped-$1"; echo "ran at $(date +%T)"\n'


def stamp_script(home, name: str) -> str:
    script(home, f"{name}.sh", STAMP.replace("$1", name))
    return f"{name}.sh"


def ours(home, job_id: str) -> list:
    return [r for r in finished(home, f"hermes.{job_id}") if r.outcome == "succeeded"]


def test_hermes_jobs_run_at_their_slots_through_hermes_own_execution(hermes_bin, cli, home, daemons):
    add(cli, "native", "every 1s", "true")
    every5 = create(hermes_bin, home, "every5", "* * * * * */5", stamp_script(home, "every5"))
    minutely = create(hermes_bin, home, "minutely", "every 1m", stamp_script(home, "minutely"))
    at = (datetime.now(timezone.utc) + timedelta(seconds=8)).replace(microsecond=0).isoformat()
    once = create(hermes_bin, home, "once", at, stamp_script(home, "once"))
    listed = cli("list")
    assert "hermes-ticker" in listed.stdout and "hermes-cron hermes enable" in listed.stdout
    enable(cli, hermes_bin)
    d = daemons()
    d.wait_started()
    # Hermes's own `hermes cron tick`, run by hand again and again all along: never a second fire
    stop = threading.Event()

    def tick_by_hand() -> None:
        while not stop.is_set():
            hermes(hermes_bin, home.root, "cron", "tick")

    ticker = threading.Thread(target=tick_by_hand, daemon=True)
    ticker.start()
    try:
        wait_for(lambda: len(ours(home, every5)) >= 3, 40, what="three slots of the every-5-s Hermes job")
        # the one-shot ran once at its time, and Hermes retired it
        wait_for(lambda: hermes_job(home, once) is None, 30, what="Hermes retiring its one-shot")
        # ... once: by our run, or (the by-hand tick beat our runner to it) by Hermes's tick, our run
        # then recorded skipped, never run twice
        # (a tick whose dispatch claim Hermes rejected leaves a record that never started: not a fire)
        [fired] = [e for e in executions(hermes_bin, home, once) if e.get("started_at")]
        [one] = wait_for(lambda: [r for r in runs(home, f"hermes.{once}") if r.state == "done"], 10,
                         what="our run of the one-shot recorded")
        assert one.scheduled == epoch(at)
        if fired["source"] == "hermes-cron":
            assert one.outcome == "succeeded" and one.started_at >= epoch(at)
        else:
            # (the tick fired it first: Hermes's next run moved, its execution is there, its claim is
            # taken, or Hermes has already retired the one-shot when our runner looks)
            assert one.outcome == "skipped" and any(w in one.reason for w in ("fired", "ticker", "no longer in")), one
        # hermes cron pause stops it, resume brings it back
        assert hermes(hermes_bin, home.root, "cron", "pause", every5).returncode == 0
        time.sleep(1)  # a slot claimed just before the pause may still start
        before = len(ours(home, every5))
        time.sleep(11)
        assert len(ours(home, every5)) == before, "a paused Hermes job is not fired"
        assert "paused" in cli("show", "every5").stdout
        assert hermes(hermes_bin, home.root, "cron", "resume", every5).returncode == 0
        wait_for(lambda: len(ours(home, every5)) > before, 15, what="the resumed job firing again")
    finally:
        stop.set()
        ticker.join(60)
    # the interval job's first slot: created_at + 1 min (with the by-hand ticks stopped: one of
    # them could fire it first, and our run would rightly be skipped, as the one-shot's may be)
    wait_for(lambda: ours(home, minutely), 75, what="the Hermes interval job's slot")
    # let every run end before counting (the every-5-s job's latest may be going on)
    assert hermes(hermes_bin, home.root, "cron", "pause", every5).returncode == 0
    wait_for(lambda: not [r for r in runs(home, f"hermes.{every5}") if r.open] and
             all(e["status"] != "running" and e["status"] != "claimed" for e in executions(hermes_bin, home, every5)),
             30, what="the every-5-s job's runs over")
    created = epoch(hermes_job(home, minutely)["created_at"])
    first = ours(home, minutely)[0]
    assert abs(first.scheduled - (int(created) + 60)) < 0.01, "the interval's slots count from its creation"
    # Hermes's own records: every run of ours is one completed execution of Hermes's, each slot once
    for job_id in (every5, once, minutely):
        recs = executions(hermes_bin, home, job_id)
        slots = Counter(int(epoch(e["claimed_at"]) // 5) for e in recs)
        assert all(n == 1 for n in slots.values()), f"a slot of {job_id} fired twice: {recs}"
        mine = [e for e in recs if e["source"] == "hermes-cron"]
        assert len(mine) == len(ours(home, job_id)) and all(e["status"] == "completed" for e in mine)
    with open(os.path.join(home.root, "stamped-every5")) as f:
        stamps = [float(x) for x in f.read().split()]
    assert len(stamps) == len(executions(hermes_bin, home, every5))
    # our commands show them as Hermes's, and refuse to change them
    assert "Hermes job 'every5'" in cli("list").stdout
    finished_run = ours(home, every5)[-1]  # (the latest run may be going on: its output isn't all there yet)
    assert "ran at" in cli("logs", "every5", "--run", str(finished_run.id)).stdout
    assert cli("history", every5).returncode == 0 and "succeeded" in cli("history", "every5").stdout
    for args in (("edit", "every5", "--timeout", "1m"), ("remove", every5), ("pause", "every5")):
        r = cli(*args)
        assert r.returncode == 2 and "hermes cron" in r.stderr, (args, r.stderr)
    status = hermes(hermes_bin, home.root, "cron", "status").stdout
    assert "hermes-cron" in status
    assert "hand-over active" in cli("status").stdout
    assert len(finished(home, "native")) > 10, "native jobs ran all along"
    assert d.stop() == 0


def test_a_hermes_run_outlives_kill_9_of_the_daemon(hermes_bin, cli, home, daemons):
    script(home, "slow.sh", 'sleep 4; echo "slow done"\n')
    job_id = create(hermes_bin, home, "slow", "* * * * * */20", "slow.sh")
    enable(cli, hermes_bin)
    d = daemons()
    d.wait_started()
    run = wait_for(lambda: next((r for r in runs(home, f"hermes.{job_id}") if r.state == "running"), None), 30,
                   what="the Hermes run started")
    d.kill9()
    d2 = daemons()
    d2.wait_started()
    done = wait_for(lambda: next((r for r in runs(home, f"hermes.{job_id}") if r.id == run.id and r.state == "done"),
                                 None), 20, what="the adopted run recorded")
    assert done.outcome == "succeeded"
    [rec] = [e for e in executions(hermes_bin, home, job_id) if abs(epoch(e["claimed_at"]) - run.scheduled) < 2]
    assert rec["status"] == "completed" and rec["source"] == "hermes-cron"
    assert d2.stop() == 0


def test_a_timeout_or_a_kill_settles_hermes_own_records(hermes_bin, cli, home, daemons):
    script(home, "hang.sh", "echo started; sleep 60\n")
    job_id = create(hermes_bin, home, "hang", "* * * * * */15", "hang.sh")
    enable(cli, hermes_bin, "--timeout", "2s")
    d = daemons()
    d.wait_started()
    name = f"hermes.{job_id}"
    timed = wait_for(lambda: next((r for r in runs(home, name) if r.outcome == "timed_out"), None), 40,
                     what="a Hermes run timed out")

    def record_of(run):
        return next((e for e in executions(hermes_bin, home, job_id) if abs(epoch(e["claimed_at"]) - run.scheduled) < 2),
                    None)

    rec = wait_for(lambda: (r := record_of(timed)) and r["status"] != "running" and r, 20, what="Hermes's record settled")
    assert rec["status"] == "failed" and "hermes-cron" in (rec["error"] or "")
    job = hermes_job(home, job_id)
    assert job["last_status"] == "error" and not job.get("fire_claim"), job
    # the next slot fires again (Hermes's claim was cleared), and this time its runner is killed outright
    nxt = wait_for(lambda: next((r for r in runs(home, name) if r.id > timed.id and r.state == "running"
                                 and r.job_pid), None), 30, what="the next run started")
    wait_for(lambda: (r := record_of(nxt)) and r["status"] == "running", 20, what="Hermes's record of the run")
    os.kill(nxt.job_pid, signal.SIGKILL)
    killed = wait_for(lambda: next((r for r in runs(home, name) if r.id == nxt.id and r.state == "done"), None), 20,
                      what="the killed run recorded")
    assert killed.signal == signal.SIGKILL
    rec = wait_for(lambda: (r := record_of(killed)) and r["status"] == "failed" and r, 30,
                   what="the killed runner's record closed by settle")
    assert f"run {killed.id}" in rec["error"]
    assert not hermes_job(home, job_id).get("fire_claim")
    assert d.stop() == 0


def test_a_slot_hermes_fired_itself_is_not_fired_again(hermes_bin, cli, home):
    """The runner's slot-aware claim, on its own: Hermes's `cron tick` fires the slot first."""
    job_id = create(hermes_bin, home, "tick", "* * * * * */5", stamp_script(home, "tick"))
    enable(cli, hermes_bin)
    before = hermes_job(home, job_id)["next_run_at"]
    slot = epoch(before)
    wait_for(lambda: time.time() > slot + 0.2, 10, what="the slot")
    assert hermes(hermes_bin, home.root, "cron", "tick").returncode == 0
    [fired] = executions(hermes_bin, home, job_id)
    assert fired["source"] == "builtin"
    from hermes_cron.contract import hermes_fire

    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_CRON")}
    env.update(HERMES_HOME=home.root, HERMES_CRON_SCHEDULED=repr(slot), HERMES_CRON_HERMES_NEXT_RUN=before)
    import subprocess

    r = subprocess.run([os.path.join(hermes_bin, "python"), "-I", hermes_fire.__file__, "fire", home.root, job_id],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == hermes_fire.SKIP_EXIT, r.stdout + r.stderr
    assert "hermes-cron: skipped:" in r.stdout
    # even when our reading of next_run_at is the current one, Hermes's execution of the slot is seen
    env["HERMES_CRON_HERMES_NEXT_RUN"] = hermes_job(home, job_id)["next_run_at"]
    r = subprocess.run([os.path.join(hermes_bin, "python"), "-I", hermes_fire.__file__, "fire", home.root, job_id],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == hermes_fire.SKIP_EXIT and "already fired this slot" in r.stdout, r.stdout + r.stderr
    assert len(executions(hermes_bin, home, job_id)) == 1


def test_the_hand_over_waits_for_hermes_own_ticker_to_stop(hermes_bin, cli, home, daemons):
    job_id = create(hermes_bin, home, "both", "* * * * * */2", stamp_script(home, "both"))
    enable(cli, hermes_bin)
    # Hermes's built-in ticker, still running (its gateway was not restarted): it beats, so we keep off
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_CRON")}
    env.update(HERMES_HOME=home.root)
    code = ("import threading, sys\nfrom cron.scheduler_provider import InProcessCronScheduler\n"
            "ev = threading.Event()\nthreading.Thread(target=lambda: (sys.stdin.read(), ev.set()), daemon=True).start()\n"
            "InProcessCronScheduler().start(ev, interval=1)\n")
    builtin = subprocess.Popen([os.path.join(hermes_bin, "python"), "-c", code], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.path.dirname(home.root))
    try:
        # Beating before our daemon starts, as a gateway that was never restarted has been: a
        # daemon started in the same second can't know of a ticker that hasn't beaten yet (the
        # test started both at once, and a slow start of Hermes's now and then lost that race).
        wait_for(lambda: os.path.exists(os.path.join(home.root, "cron", "ticker_heartbeat")), 20,
                 what="Hermes's ticker beating")
        d = daemons()
        d.wait_started()
        wait_for(lambda: len(executions(hermes_bin, home, job_id)) >= 2, 30, what="Hermes's own ticker firing")
        assert "Hermes's own ticker is still running" in cli("status").stdout
        assert not runs(home, f"hermes.{job_id}"), "two tickers never both fire Hermes's jobs"
    finally:
        builtin.communicate(b"", timeout=30)
    # its gateway restarted with our provider: its ticker stopped long ago
    hb = os.path.join(home.root, "cron", "ticker_heartbeat")
    old = time.time() - 600
    with open(hb, "w") as f:
        f.write(str(old))
    os.utime(hb, (old, old))
    d.signal(signal.SIGUSR1)
    wait_for(lambda: len(ours(home, job_id)) >= 2, 20, what="hermes-cron firing once Hermes's ticker stopped")
    recs = executions(hermes_bin, home, job_id)
    slots = Counter(int(epoch(e["claimed_at"]) // 2) for e in recs)
    assert all(n == 1 for n in slots.values()), recs
    assert {e["source"] for e in recs} == {"builtin", "hermes-cron"}
    assert d.stop() == 0


def test_enable_and_disable_leave_hermes_config_byte_for_byte(hermes_bin, cli, home, daemons):
    os.makedirs(home.root, exist_ok=True)
    config = os.path.join(home.root, "config.yaml")
    original = b"# my Hermes\nmodel:\n  default: some/model   # keep me\n\ncron:\n    max_parallel_jobs: 3\n"
    with open(config, "wb") as f:
        f.write(original)
    os.chmod(config, 0o640)
    script(home, "x.sh", "true\n")
    create(hermes_bin, home, "x", "every 1h", "x.sh")
    enable(cli, hermes_bin)
    with open(config, "rb") as f:
        edited = f.read()
    assert edited == original.replace(b"cron:\n", b"cron:\n    provider: hermes-cron\n")
    assert os.stat(config).st_mode & 0o777 == 0o640
    assert os.path.exists(os.path.join(home.root, "plugins", "hermes-cron", "__init__.py"))
    # Hermes loads our plugin; with no daemon it is unavailable and Hermes falls back to its own ticker
    pick = "from cron.scheduler_provider import resolve_cron_scheduler\nprint(resolve_cron_scheduler().name)"
    assert hermes_python(hermes_bin, home, pick).stdout.split()[-1] == "builtin"
    d = daemons()
    d.wait_started()
    assert hermes_python(hermes_bin, home, pick).stdout.split()[-1] == "hermes-cron"
    assert "hermes-cron" in hermes(hermes_bin, home.root, "cron", "status").stdout
    enable(cli, hermes_bin)  # again (an upgrade refreshes the plugin): the original stays the one to restore
    assert d.stop() == 0
    r = cli("hermes", "disable")
    assert r.returncode == 0, r.stderr
    with open(config, "rb") as f:
        assert f.read() == original
    assert not os.path.exists(os.path.join(home.root, "plugins", "hermes-cron"))
    assert "not handed over" in cli("hermes", "status").stdout


def test_an_unreadable_hermes_file_never_stops_native_jobs(hermes_bin, cli, home, daemons):
    add(cli, "native", "every 1s", "true")
    job_id = create(hermes_bin, home, "h", "every 1h", stamp_script(home, "h"))
    enable(cli, hermes_bin)
    d = daemons()
    d.wait_started()
    with open(home.legacy_jobs, "r+") as f:
        good = f.read()
        f.seek(0)
        f.write("{ not json")
        f.truncate()
    count = len(finished(home, "native"))
    d.signal(signal.SIGUSR1)
    wait_for(lambda: len(finished(home, "native")) >= count + 3, 15, what="native runs")
    status = cli("status").stdout
    assert "can't be read" in status and "last good reading" in status
    assert "can't be read" in cli("list").stderr
    from hermes_cron.store.sqlite import SqliteStore

    store = SqliteStore(home)
    try:  # the daemon keeps the last good reading in force: the Hermes job is still scheduled
        assert f"hermes.{job_id}" in store.sched_rows()
    finally:
        store.close()
    with open(home.legacy_jobs, "w") as f:
        f.write(good)
    assert not d.events("tick.failed") and d.stop() == 0


def test_a_job_hermes_sets_due_now_is_fired_once(hermes_bin, cli, home, daemons):
    """Hermes's `trigger_job` (the console's `/cron run`) sets next_run_at to now and leaves the
    firing to the ticker, telling the provider (on_jobs_changed: SIGUSR1 to our daemon)."""
    job_id = create(hermes_bin, home, "hourly", "every 1h", stamp_script(home, "hourly"))
    enable(cli, hermes_bin)
    d = daemons(tick=60)
    d.wait_started()
    code = ("from cron.jobs import trigger_job\nfrom cron.scheduler import _notify_provider_jobs_changed\n"
            f"trigger_job({job_id!r})\n_notify_provider_jobs_changed()\n")
    assert hermes_python(hermes_bin, home, code).returncode == 0
    [run] = wait_for(lambda: ours(home, job_id), 15, what="the run Hermes asked for")
    assert run.trigger == "manual"
    time.sleep(3)  # a few more ticks: the same request is not fired again
    d.signal(signal.SIGUSR1)
    time.sleep(1)
    assert len(runs(home, f"hermes.{job_id}")) == 1
    [rec] = executions(hermes_bin, home, job_id)
    assert rec["source"] == "hermes-cron" and rec["status"] == "completed"
    assert d.stop() == 0
