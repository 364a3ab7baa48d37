"""Bad input, table-driven, through the real commands: each case ends in its documented exit
code and one line on stderr naming the fault, with no traceback, and the stores unchanged."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import cli_env

# Real commands in real processes, a few hundred ms each: in the full run, not the quick one.
pytestmark = pytest.mark.slow

BIG = "99999999999999999999999"
FIELD_5000 = "9" * 5000

# (arguments, exit code, a piece of the message)
CASES: list[tuple[tuple[str, ...], int, str]] = [
    # add: numbers out of range
    (("add", "x", "-s", "@daily", "--keep-runs", BIG, "--", "true"), 2, "--keep-runs"),
    (("add", "x", "-s", "@daily", "--keep-runs", "0", "--", "true"), 2, "1<=x<=1000000"),
    (("add", "x", "-s", "@daily", "--keep-runs", "-1", "--", "true"), 2, "--keep-runs"),
    (("add", "x", "-s", "@daily", "--keep-runs", "lots", "--", "true"), 2, "--keep-runs"),
    (("add", "x", "-s", "@daily", "--keep-runs", "５", "--", "true"), 2, "--keep-runs"),
    (("add", "x", "-s", "every 99999999999999999999d", "--", "true"), 2, "out of range: 1s to 366d"),
    (("add", "x", "-s", "every 0s", "--", "true"), 2, "out of range"),
    (("add", "x", "-s", "every 0.5s", "--", "true"), 2, "out of range"),
    (("add", "x", "-s", "every nan", "--", "true"), 2, "not a duration"),
    (("add", "x", "-s", "every -5m", "--", "true"), 2, "not a duration"),
    (("add", "x", "-s", "every ５m", "--", "true"), 2, "not a duration"),
    (("add", "x", "-s", "@daily", "--timeout", "99999999999999999999d", "--", "true"), 2, "timeout"),
    (("add", "x", "-s", "@daily", "--timeout", "0", "--", "true"), 2, "out of range"),
    (("add", "x", "-s", "@daily", "--timeout", "nan", "--", "true"), 2, "not a duration"),
    (("add", "x", "-s", "@daily", "--timeout", "inf", "--", "true"), 2, "not a duration"),
    (("add", "x", "-s", "@daily", "--timeout", "1e400", "--", "true"), 2, "not a duration"),
    (("add", "x", "-s", "@daily", "--timeout", "-1", "--", "true"), 2, "not a duration"),
    (("add", "x", "-s", "@daily", "--timeout", "367d", "--", "true"), 2, "out of range"),
    (("add", "x", "-s", "@daily", "--kill-grace", "99999999999999999999d", "--", "true"), 2, "kill grace"),
    (("add", "x", "-s", "@daily", "--kill-grace", "2d", "--", "true"), 2, "out of range: 0s to 1d"),
    (("add", "x", "-s", "@daily", "--misfire-grace", "0", "--", "true"), 2, "misfire grace"),
    (("add", "x", "-s", "@daily", "--misfire-grace", "400d", "--", "true"), 2, "out of range"),
    (("add", "x", "-s", "@daily", "--output-cap", "10", "--", "true"), 2, "1K to 1G"),
    (("add", "x", "-s", "@daily", "--output-cap", BIG + "G", "--", "true"), 2, "1K to 1G"),
    (("add", "x", "-s", "@daily", "--output-cap", "５M", "--", "true"), 2, "not a size"),
    (("add", "x", "-s", "@daily", "--output-cap", "1T", "--", "true"), 2, "not a size"),
    # add: cron fields
    (("add", "x", "-s", "١ * * * *", "--", "true"), 2, "minute field"),
    (("add", "x", "-s", "５ * * * *", "--", "true"), 2, "ASCII digits"),
    (("add", "x", "-s", "* ١ * * *", "--", "true"), 2, "hour field"),
    (("add", "x", "-s", "* * ٣ * *", "--", "true"), 2, "day-of-month field"),
    (("add", "x", "-s", "* * * ５ *", "--", "true"), 2, "month field"),
    (("add", "x", "-s", "* * * * ５", "--", "true"), 2, "day-of-week field"),
    (("add", "x", "-s", "*/５ * * * *", "--", "true"), 2, "step"),
    (("add", "x", "-s", "５ * * * * *", "--", "true"), 2, "second field"),
    (("add", "x", "-s", "1-５ * * * *", "--", "true"), 2, "minute field"),
    (("add", "x", "-s", f"{FIELD_5000} * * * *", "--", "true"), 2, "longer than 1000"),
    (("add", "x", "-s", f"{'9' * 300} * * * *", "--", "true"), 2, "longer than 200"),
    (("add", "x", "-s", "1," * 150 + "1 * * * *", "--", "true"), 2, "longer than 200"),
    (("add", "x", "-s", "0" * 5 + " * * * *", "--", "true"), 2, "minute field"),
    (("add", "x", "-s", "x" * 2000, "--", "true"), 2, "longer than 1000"),
    (("add", "x", "-s", "*/0 * * * *", "--", "true"), 2, "step"),
    (("add", "x", "-s", "61 * * * *", "--", "true"), 2, "out of range 0-59"),
    (("add", "x", "-s", "* * * * * * *", "--", "true"), 2, "7 fields"),
    (("add", "x", "-s", "@sometimes", "--", "true"), 2, "unknown macro"),
    (("add", "x", "-s", "H/0 * * * *", "--", "true"), 2, "step"),
    # add: times and zones
    (("add", "x", "-s", "at", "--", "true"), 2, "needs a time"),
    (("add", "x", "-s", "every", "--", "true"), 2, "needs an interval"),
    (("add", "x", "-s", "at 0001-01-01T00:00", "--", "true"), 2, "years 1970 to 2999"),
    (("add", "x", "-s", "at 9999-12-31T23:59", "--", "true"), 2, "years 1970 to 2999"),
    (("add", "x", "-s", "at 2027-03-28T02:30", "--tz", "Europe/Berlin", "--", "true"), 2, "does not exist"),
    (("add", "x", "-s", "at 2027-10-31T02:30", "--tz", "Europe/Berlin", "--", "true"), 2, "+01:00"),
    (("add", "x", "-s", "at 2020-01-01T00:00", "--", "true"), 2, "in the past"),
    (("add", "x", "-s", "at tomorrow", "--", "true"), 2, "not an ISO date"),
    (("add", "x", "-s", "at ２０２７-01-01T00:00", "--", "true"), 2, "not an ISO date"),
    (("add", "x", "-s", "@daily", "--tz", "Mars/Olympus", "--", "true"), 2, "Mars/Olympus"),
    (("add", "x", "-s", "@daily", "--tz", "../../etc/passwd", "--", "true"), 2, "zone"),
    # add: the rest of a job
    (("add", "x", "-s", "@daily", "--shell", "--", "echo a", "echo b"), 2, "one string"),
    (("add", "x", "-s", "@daily", "--cwd", "/etc/passwd", "--", "true"), 2, "is not a directory"),
    (("add", "x", "-s", "@daily", "--cwd", "/nonexistent/folder", "--", "true"), 2, "does not exist"),
    (("add", "x", "-s", "@daily", "--env", "1BAD=x", "--", "true"), 2, "environment variable"),
    (("add", "x", "-s", "@daily", "--env", "NOEQUALS", "--", "true"), 2, "KEY=VALUE"),
    (("add", "x", "-s", "@daily", "--overlap", "sometimes", "--", "true"), 2, "--overlap"),
    (("add", "../evil", "-s", "@daily", "--", "true"), 2, "not allowed"),
    (("add", "", "-s", "@daily", "--", "true"), 2, "not allowed"),
    (("add", "a" * 65, "-s", "@daily", "--", "true"), 2, "not allowed"),
    (("add", ".hidden", "-s", "@daily", "--", "true"), 2, "not allowed"),
    (("add", "bad\n", "-s", "@daily", "--", "true"), 2, "not allowed"),
    (("add", "x", "-s", "@daily", "--env", "KEY\n=x", "--", "true"), 2, "environment variable"),
    (("add", "good", "-s", "@daily", "--", "true"), 4, "already exists"),
    (("add", "x", "-s", "@daily"), 2, "COMMAND"),
    (("add", "x", "--", "true"), 2, "--schedule"),
    # edit
    (("edit", "good", "--keep-runs", "0"), 2, "--keep-runs"),
    (("edit", "good", "--timeout", "nan"), 2, "not a duration"),
    (("edit", "good", "--timeout", "400d"), 2, "out of range"),
    (("edit", "good", "--schedule", "５ * * * *"), 2, "ASCII digits"),
    (("edit", "nosuch", "--timeout", "5"), 3, "no job named"),
    (("edit", "good"), 2, "nothing to change"),
    (("edit", "good", "--shell", "--", "echo a", "echo b"), 2, "one string"),
    # next
    (("next", "９ * * * *"), 2, "ASCII digits"),
    (("next", f"{FIELD_5000} * * * *"), 2, "longer than 1000"),
    (("logs", "good", "--run", "１"), 2, "ASCII"),
    (("next", "* * * * *", "--from", "0001-01-01T00:00"), 2, "years 1970 to 2999"),
    (("next", "* * * * *", "--from", "9999-12-31T23:59"), 2, "years 1970 to 2999"),
    (("next", "* * * * *", "--from", "yesterday"), 2, "--from"),
    (("next", "* * * * *", "--count", "0"), 2, "--count"),
    (("next", "* * * * *", "--count", "100000"), 2, "--count"),
    (("next", "* * * * *", "--tz", "Nowhere/City"), 2, "Nowhere/City"),
    (("next", "every 99999999999999999999d"), 2, "out of range"),
    # logs, history, trigger and the other job commands
    (("logs", "good", "--run", "999999999999999999999"), 2, "--run"),
    (("logs", "good", "--run", "0"), 2, "--run"),
    (("logs", "good", "--run", "-1"), 2, "--run"),
    (("logs", "nosuch"), 3, "nosuch"),
    (("history", "good", "--limit", "-1"), 2, "--limit"),
    (("history", "nosuch"), 3, "no job named"),
    (("trigger", "nosuch"), 3, "no job named"),
    (("show", "nosuch"), 3, "no job named"),
    (("remove", "nosuch"), 3, "no job named"),
    (("pause", "nosuch"), 3, "no job named"),
    (("resume", "nosuch"), 3, "no job named"),
    # the daemon's options
    (("start", "--tick-interval", "0"), 2, "--tick-interval"),
    (("start", "--tick-interval", "nan"), 2, "finite"),
    (("start", "--tick-interval", "99999999999"), 2, "--tick-interval"),
    (("start", "--heartbeat-every", "0"), 2, "--heartbeat-every"),
    (("start", "--heartbeat-every", BIG), 2, "--heartbeat-every"),
    (("start", "--max-concurrent", "0"), 2, "--max-concurrent"),
    (("run", "--tick-interval", "inf"), 2, "--tick-interval"),
    (("restart", "--tick-interval", "0"), 2, "--tick-interval"),
    (("stop", "--timeout", "nan"), 2, "finite"),
    (("stop", "--timeout", "-1"), 2, "--timeout"),
    (("stop", "--timeout", "５"), 2, "ASCII"),
    (("start", "--tick-interval", "５"), 2, "ASCII"),
]

WATCHDOG_CASES: list[tuple[tuple[str, ...], int, str]] = [
    (("--stale-after", "nan", "--once"), 2, "finite"),
    (("--stale-after", "0", "--once"), 2, "--stale-after"),
    (("--burst", "0", "--once"), 2, "--burst"),
    (("--burst", BIG, "--once"), 2, "--burst"),
    (("--backoff", "inf", "--once"), 2, "--backoff"),
    (("--backoff", "nan", "--once"), 2, "finite"),
    (("--window", "1e12", "--once"), 2, "--window"),
    (("--check-every", "１", "--once"), 2, "ASCII"),
]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    """One home with a valid job and a run, its state database checkpointed, shared by the cases
    (none of them may change it: that is the point)."""
    from hermes_cron.contract.paths import Home

    home = Home(str(tmp_path_factory.mktemp("bad-input") / "hermes"))
    env = cli_env(home)
    for args in (["add", "good", "-s", "@daily", "--", "true"], ["trigger", "good", "--wait"], ["list"]):
        proc = subprocess.run([sys.executable, "-m", "hermes_cron", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    return home


def _stores(home) -> tuple[bytes, bytes]:
    with open(home.jobs, "rb") as f, open(home.state, "rb") as g:
        return f.read(), g.read()


def _check(proc: subprocess.CompletedProcess, code: int, piece: str, before, home) -> None:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert len(lines) == 1, f"expected one line on stderr, got: {proc.stderr!r}"
    assert proc.returncode == code, (proc.returncode, lines[0])
    assert piece in lines[0], lines[0]
    assert _stores(home) == before, "jobs.json and state.db are byte-identical"


@pytest.mark.parametrize("args,code,piece", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(shared_home, args, code, piece):
    before = _stores(shared_home)
    proc = subprocess.run([sys.executable, "-m", "hermes_cron", *args], env=cli_env(shared_home),
                          capture_output=True, text=True, timeout=60)
    _check(proc, code, piece, before, shared_home)


@pytest.mark.parametrize("args,code,piece", WATCHDOG_CASES, ids=[" ".join(c[0]) for c in WATCHDOG_CASES])
def test_bad_watchdog_options_are_refused_in_one_line(shared_home, args, code, piece):
    before = _stores(shared_home)
    proc = subprocess.run([sys.executable, "-m", "hermes_cron_watchdog", *args], env=cli_env(shared_home),
                          capture_output=True, text=True, timeout=60)
    _check(proc, code, piece, before, shared_home)


def test_there_are_enough_cases():
    assert len(CASES) + len(WATCHDOG_CASES) >= 60


def test_a_command_not_found_at_add_is_a_warning_not_a_refusal(cli, home):
    r = cli("add", "ghost", "-s", "@daily", "--", "no-such-program-anywhere", "--flag")
    assert r.returncode == 0 and "warning" in r.stderr and "127" in r.stderr, r.stderr
    r = cli("add", "real", "-s", "@daily", "--", "true")
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert os.path.exists(home.jobs)
