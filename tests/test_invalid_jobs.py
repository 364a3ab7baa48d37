"""A job that can't be evaluated never takes anything else down: each bad value is written into
jobs.json by hand beside a good job, and every command, and a real daemon, keep working."""

from __future__ import annotations

import json
import os

import pytest

from daemon_harness import DaemonProc, finished, kill_leftovers

# Real commands in real processes, a few hundred ms each: in the full run, not the quick one.
pytestmark = pytest.mark.slow

GOOD = {"name": "good", "command": ["true"], "schedule": "every 1s", "tz": "UTC"}
BASE = {"command": ["true"], "schedule": "@daily", "tz": "UTC"}

BAD = {
    "keep_runs huge": {"keep_runs": 99999999999999999999999},
    "keep_runs zero": {"keep_runs": 0},
    "keep_runs text": {"keep_runs": "x"},
    "output_cap huge": {"output_cap": 10**30},
    "interval huge": {"schedule": "every 99999999999999999999d"},
    "schedule nonsense": {"schedule": "not a schedule"},
    "unicode digit": {"schedule": "١ * * * *"},
    "zone": {"tz": "Mars/Olympus"},
    "timeout huge": {"timeout": 1e30},
    "timeout negative": {"timeout": -1},
    "kill_grace huge": {"kill_grace": 1e30},
    "misfire_grace zero": {"misfire_grace": 0},
    "command empty": {"command": []},
    "command string": {"command": "ls"},
    "overlap": {"overlap": "sometimes"},
    "env key": {"env": {"1BAD": "x"}},
    "cwd relative": {"cwd": "relative/path"},
    "anchor": {"anchor": "not a time"},
    "anchor far": {"anchor": 1e300},
    "at far future": {"schedule": "at 9999-12-31T23:59"},
}


def write_jobs(home, bad_entry: dict) -> None:
    home.ensure()
    with open(home.jobs, "w") as f:
        json.dump({"version": 1, "jobs": [GOOD, bad_entry]}, f)
    os.chmod(home.jobs, 0o600)


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


@pytest.mark.parametrize("what", sorted(BAD))
def test_a_bad_job_is_shown_as_invalid_and_the_rest_works(cli, home, what):
    bad = {"name": "bad", **BASE, **BAD[what]}
    write_jobs(home, bad)
    r = cli("list")
    no_traceback(r)
    assert r.returncode == 0 and "good" in r.stdout and "INVALID" in r.stdout, r.stdout + r.stderr
    r = cli("list", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["bad"]["state"] == "invalid" and rows["bad"]["reason"] and rows["good"]["state"] == "enabled"
    r = cli("show", "bad")
    no_traceback(r)
    assert r.returncode == 0 and "INVALID" in r.stdout and "remove" in r.stdout
    r = cli("export")
    no_traceback(r)
    assert r.returncode == 0 and json.loads(r.stdout)["jobs"]
    for args in (["pause", "bad"], ["edit", "bad", "--timeout", "5"]):
        r = cli(*args)
        no_traceback(r)
        assert r.returncode == 2 and "invalid" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("add", "other", "-s", "@daily", "--", "true")
    assert r.returncode == 0, r.stderr
    entries = json.load(open(home.jobs))["jobs"]
    assert bad in entries, "a write by another command keeps the invalid entry exactly as it was"
    r = cli("status", "--json")
    no_traceback(r)
    report = json.loads(r.stdout)
    assert report["jobs"]["invalid"] == 1 and report["invalid_jobs"][0]["job"] == "bad"
    r = cli("remove", "bad")
    no_traceback(r)
    assert r.returncode == 0
    assert [e["name"] for e in json.load(open(home.jobs))["jobs"]] == ["good", "other"]


@pytest.mark.slow
@pytest.mark.parametrize("what", ["keep_runs huge", "interval huge", "unicode digit", "timeout huge", "anchor far"])
def test_a_daemon_ticks_the_good_jobs_and_logs_the_bad_one_once(home, what):
    write_jobs(home, {"name": "bad", **BASE, "schedule": "every 1s", **BAD[what]})
    daemon = DaemonProc(home, tick=0.5)
    try:
        daemon.wait_started()
        from conftest import wait_for

        wait_for(lambda: len(finished(home, "good")) >= 3, 15, what="three runs of the good job")
        assert all(r.outcome == "succeeded" for r in finished(home, "good"))
        assert len(daemon.events("job.invalid", job="bad")) == 1, "logged once, not every tick"
        assert not daemon.events("tick.failed")
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
        kill_leftovers(home)
