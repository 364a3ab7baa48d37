"""What a new user meets first, through the real command: a bare `hermes-cron`, a first failing
run explained where it is seen, history across jobs, sizes and schedules shown whole, and a
trigger with no daemon that doesn't hold the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env, wait_for

pytestmark = pytest.mark.slow


def test_bare_hermes_cron_shows_what_it_can_do(home):
    r = subprocess.run([sys.executable, "-m", "hermes_cron"], env=cli_env(home), capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    assert "Commands:" in r.stdout and "trigger" in r.stdout


def test_a_failing_run_says_why_where_it_is_seen(cli, home):
    assert cli("add", "boom", "-s", "every 1h", "--", "sh", "-c", "echo first; echo last words; exit 3").returncode == 0
    assert cli("add", "ghost", "-s", "every 1h", "--", "/no/such/program").returncode == 0
    none_yet = cli("logs", "boom")
    assert none_yet.returncode == 3
    assert none_yet.stderr.strip() == ("hermes-cron: job 'boom' has no run with output yet (run it now with: "
                                       "hermes-cron trigger boom --wait)")
    assert cli("history", "boom").stdout.strip() == "no runs of boom yet (run it now with: hermes-cron trigger boom --wait)"
    r = cli("trigger", "boom", "--wait")
    assert r.returncode == 3
    assert r.stdout.splitlines()[:4] == ["boom run 1: failed (exit 3)", "  output (last lines):", "    first",
                                         "    last words"]
    r = cli("trigger", "ghost", "--wait")
    assert r.returncode == 127 and "  reason: command not found: '/no/such/program'" in r.stdout
    everything = cli("history").stdout.splitlines()
    assert everything[0].split()[:2] == ["RUN", "JOB"]
    assert "ghost" in everything[1] and "failed (exit 127)" in everything[1] and "command not found" in everything[1]
    assert "boom" in everything[2] and "failed (exit 3)" in everything[2]
    failed = json.loads(cli("history", "--status", "failed", "--json").stdout)
    assert sorted(r["job"] for r in failed) == ["boom", "ghost"]
    assert cli("history", "--status", "succeeded").stdout.strip() == "no runs that ended succeeded yet"
    assert cli("history", "--status", "nonsense").returncode == 2


def test_sizes_and_long_schedules_are_shown_whole(cli, home):
    assert cli("add", "once", "-s", "at 2099-12-01T10:00:00", "--output-cap", "1M", "--", "true").returncode == 0
    assert "output cap:    1M (1048576 bytes)" in cli("show", "once").stdout
    assert "at 2099-12-01T10:00:00 " in cli("list").stdout
    assert cli("next", "@daily", "--home", home.root, "-n", "1").returncode == 0


def test_trigger_without_a_daemon_returns_at_once_and_the_run_is_recorded(cli, home, tmp_path):
    done = tmp_path / "done"
    assert cli("add", "slow", "-s", "every 1h", "--", "sh", "-c", f"sleep 2; touch {done}").returncode == 0
    r = cli("trigger", "slow")
    assert r.returncode == 0 and "no daemon is running: it was started here, in the background" in r.stdout
    assert not done.exists(), "trigger returned before the job ended"
    wait_for(lambda: "running" in cli("history", "slow").stdout, 5, what="the run shown running")
    wait_for(done.exists, 10, what="the job to end")
    wait_for(lambda: "succeeded" in cli("history", "slow").stdout, 5, what="its result shown")
    again = cli("trigger", "slow", "--wait")  # records the first before claiming: no overlap skip
    assert again.returncode == 0 and "succeeded" in again.stdout
    statuses = [line.split()[-1] for line in cli("history", "slow").stdout.splitlines()[1:]]
    assert statuses == ["succeeded", "succeeded"]
    assert os.path.exists(home.run_dir("slow", 1))


def test_cron_as_other_crons_write_it_through_add(cli, home):
    r = cli("add", "tokyo", "-s", "CRON_TZ=Asia/Tokyo 5 9 * * *", "--", "true")
    assert r.returncode == 0 and "added tokyo: 5 9 * * * (Asia/Tokyo)" in r.stdout
    assert cli("add", "both", "-s", "TZ=UTC 5 9 * * *", "--tz", "Europe/Paris", "--", "true").returncode == 2
    r = cli("add", "six", "-s", "* * * * * */15", "--", "true")
    assert r.returncode == 0 and "the same schedule here is '*/15 * * * * *'" in r.stderr
    assert cli("add", "eom", "-s", "0 9 L * *", "--", "true").returncode == 0
    assert "09:00:00" in json.loads(cli("show", "eom", "--json").stdout)["next_run"]


def complete(home, words: str) -> list[str]:
    env = cli_env(home, _HERMES_CRON_COMPLETE="bash_complete", COMP_WORDS=words,
                  COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    r = subprocess.run([sys.executable, "-m", "hermes_cron"], env={**env, "_HERMES_CRON_COMPLETE": "bash_complete"},
                       capture_output=True, text=True)
    return [line.split(",", 1)[1] for line in r.stdout.splitlines() if "," in line]


def test_shell_completion_offers_job_names_and_zones(cli, home):
    for name in ("backup", "bakery", "report"):
        assert cli("add", name, "-s", "@daily", "--", "true").returncode == 0
    assert complete(home, "hermes-cron show ba") == ["backup", "bakery"]
    assert complete(home, "hermes-cron history r") == ["report"]
    assert complete(home, "hermes-cron next @daily --tz Europe/Ber") == ["Europe/Berlin"]
    assert "trigger" in complete(home, "hermes-cron tr")


def test_times_follow_one_policy(cli, home):
    """People get the job's zone (or the machine's) with the offset; JSON gets ISO 8601 UTC with Z."""
    r = cli("add", "eom", "-s", "0 9 L * *", "--tz", "Asia/Tokyo", "--json", "--", "true")
    nexts = json.loads(r.stdout)["next_runs"]
    assert len(nexts) == 3 and all(t.endswith("Z") for t in nexts) and nexts[0].endswith("T00:00:00.000Z")
    assert "+09:00" in cli("edit", "eom", "--timeout", "5m").stdout
    assert cli("trigger", "eom", "--wait").returncode == 0
    line = cli("history", "eom").stdout.splitlines()[1]
    assert line.count("+09:00") == 2, line  # scheduled and started, in the job's zone
    run = json.loads(cli("history", "eom", "--json").stdout)[0]
    assert run["scheduled"].endswith("Z") and run["started_at"].endswith("Z")
    status = json.loads(cli("status", "--json").stdout)
    assert all(n["at"].endswith("Z") for n in status["next"])
