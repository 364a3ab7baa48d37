"""`hermes-cron run` on its quick path (cli/quick.py): the command lines that start, restart, the
watchdog and the systemd units write are read without click, to the same values click reads,
and the daemon then runs without click in its memory; anything else goes to click, which says
what is wrong."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click
import pytest

from conftest import cli_env, wait_for
from hermes_cron.cli import rundaemon
from hermes_cron.cli.main import main as click_main
from hermes_cron.cli.quick import parse_run
from hermes_cron.contract.command import RUN_OPTIONS, daemon_argv, run_args


def click_reads(args: list[str], monkeypatch) -> dict:
    """What the click command hands to the daemon's body for `args`."""
    seen: dict = {}

    def body(context, **values):
        seen.update(values, **{"--home": context._home_opt, "--store": context._store_opt})
        return 0

    monkeypatch.setattr(rundaemon, "run_daemon", body)
    with pytest.raises(SystemExit) as e:
        click_main(args)
    assert e.value.code == 0
    return seen


PLAIN = [
    ["run"],
    ["--home", "/h", "run", "--tick-interval", "1", "--log-file", "/tmp/x.log", "--log-format", "json"],
    ["run", "--tick-interval=0.5", "--heartbeat-every", "3", "--max-concurrent=40", "--lease", "30",
     "--log-level", "debug", "--home=/h", "--store", "postgresql://db/x"],
    ["--store=postgresql://db/x", "run", "--ping", "https://hc.example/ping/1", "--tick-interval", "3600"],
    ["run", "--tick-interval", ".5", "--lease", "3"],
]


@pytest.mark.parametrize("args", PLAIN)
def test_plain_run_lines_are_read_as_click_reads_them(args, monkeypatch):
    assert parse_run(args) == click_reads(args, monkeypatch)


@pytest.mark.parametrize("args", [
    ["run", "--tick-interval", "0"], ["run", "--tick-interval", "nan"], ["run", "--tick-interval", "٣"],
    ["run", "--heartbeat-every", "0"], ["run", "--max-concurrent", "-1"], ["run", "--log-format", "xml"],
    ["run", "--log-level", "INFO"], ["run", "--log-file", "/"], ["run", "--tick-interval"], ["run", "--bogus", "1"],
    ["run", "extra"], ["--tick-interval", "5", "run"], ["run", "--lease", "2.9"],
])
def test_a_wrong_run_line_goes_to_click_which_says_why(args, monkeypatch, capsys):
    assert parse_run(args) is None
    monkeypatch.setattr(rundaemon, "run_daemon", lambda context, **values: 0)
    with pytest.raises(SystemExit) as e:
        click_main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("hermes-cron") and err.count("\n") == 1


@pytest.mark.parametrize("args", [
    ["run", "--tick-interval", "1e3"], ["run", "--ping", ""], ["run", "--tick-interval", "5", "--tick-interval", "6"],
    ["run", "--help"],
])
def test_unusual_run_lines_go_to_click_as_well(args, monkeypatch):
    assert parse_run(args) is None
    monkeypatch.setattr(rundaemon, "run_daemon", lambda context, **values: 0)
    with pytest.raises(SystemExit) as e:
        click_main(args)
    assert e.value.code == 0


def test_every_option_the_daemon_is_started_with_is_read_quickly(tmp_path):
    """The command line start, restart and the watchdog build (contract/command.py) always
    takes the quick path, whatever options it passes on."""
    from hermes_cron.contract.paths import Home

    values = {"tick_interval": 2.5, "heartbeat_every": 7, "max_concurrent": 9, "ping": "https://x.example/p",
              "lease": 40.0, "log_format": "keyvalue", "log_file": str(tmp_path / "d.log"), "log_level": "warning"}
    assert len(values) == len(RUN_OPTIONS)
    argv = daemon_argv(Home(str(tmp_path / "h")), run_args(values))
    parsed = parse_run(argv[3:])  # (after `python -m hermes_cron`)
    assert parsed is not None and {k: parsed[k] for k in values} == values


# Modules the daemon never needs, each worth a few hundred kB of its memory: click (the other
# commands), subprocess (only a run that can't be held starts with it, in its supervisor), socket
# (the host's name comes from os.uname), calendar (cronexpr counts days itself), and the modules
# structlog and the standard library import for what we never use (contract/lazy.py defers them):
# asyncio, uuid, inspect with ast and dis (dataclasses, for a class without a docstring), tokenize.
UNUSED = ("click", "subprocess", "socket", "calendar", "asyncio", "uuid", "inspect", "ast", "dis", "tokenize")


@pytest.mark.slow
def test_a_daemon_started_plainly_runs_without_click_or_other_unused_modules(cli, home, tmp_path):
    """A real daemon, as `start` runs it: it ticks and runs a job, and never loaded click nor
    the other modules it doesn't use."""
    assert cli("add", "often", "--schedule", "every 1s", "--", "true").returncode == 0
    probe = ("import atexit, sys, os\n"
             "def loaded():\n"
             "    names = [n for n in %r if type(sys.modules.get(n)).__name__ == 'module']\n"
             "    os.write(2, ('loaded: ' + ' '.join(names) + '\\n').encode())\n"
             "atexit.register(loaded)\n"
             "sys.argv = ['hermes-cron', *sys.argv[1:]]\n"
             "from hermes_cron.cli import main; main()\n") % (UNUSED,)
    proc = subprocess.Popen([sys.executable, "-c", probe, "run", "--tick-interval", "1", "--log-file",
                             str(tmp_path / "d.log")], env=cli_env(home), stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "job.finished" in open(tmp_path / "d.log").read() if os.path.exists(tmp_path / "d.log")
                 else False, timeout=30, what="a run of the job, finished")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert err.strip().splitlines()[-1] == "loaded:", err
