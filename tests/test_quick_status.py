"""`hermes-cron status` on its quick path (cli/quick.py): the same answer as the click command,
without loading click; anything but a plain status command line goes to click."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env, wait_for
from hermes_cron import __version__
from hermes_cron.cli.quick import parse


@pytest.mark.parametrize("args,expected", [
    (["status"], {"json": False, "--home": None, "--store": None}),
    (["--home", "/h", "status", "--json"], {"json": True, "--home": "/h", "--store": None}),
    (["status", "--home=/h", "--store", "postgresql://db/x"], {"json": False, "--home": "/h",
                                                               "--store": "postgresql://db/x"}),
])
def test_plain_status_lines_are_taken(args, expected):
    assert parse(args) == expected


@pytest.mark.parametrize("args", [["status", "--cluster"], ["status", "--help"], ["list"], ["--home"], [],
                                  ["--json", "status"], ["status", "status"], ["status", "--home", "--json"],
                                  ["--version"], ["status", "--json", "--json"]])
def test_anything_else_goes_to_click(args):
    assert parse(args) is None


def _run(home, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(home), timeout=60)


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_the_quick_path_answers_as_click_does_without_click(cli, home, extra):
    cli("add", "x", "-s", "every 1h", "--", "true", check=True)
    quick = _run(home, "import sys, atexit\n"
                       "atexit.register(lambda: print('click loaded' if 'click' in sys.modules else '', file=sys.stderr))\n"
                       f"from hermes_cron.cli import main; main(['status', *{extra!r}])")
    full = _run(home, f"from hermes_cron.cli.main import main; main(['status', *{extra!r}])")
    assert quick.returncode == full.returncode == 3
    assert quick.stdout == full.stdout and "not running" in quick.stdout or '"running": false' in quick.stdout
    assert "click loaded" not in quick.stderr


def test_errors_are_one_line_with_their_exit_code(cli, tmp_path):
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("")
    r = cli("--home", str(not_a_folder), "status")
    assert r.returncode == 8 and r.stderr == f"hermes-cron: {not_a_folder} is not a folder\n"


# What `status` never imports, as installed (each costs its start): re and the enum it loads (the
# wrapper pip generates for an entry point imports re, so the command is a script of its own:
# hermes_cron/cli/hermes-cron), json (json_lite reads the daemon's heartbeat and pidfile), signal
# and its enums, click, and the schedule and time-zone code.
STATUS_NEVER = ("re", "enum", "json", "signal", "click", "hermes_cron.logic.schedule", "zoneinfo")


@pytest.mark.slow
def test_the_installed_command_reads_a_running_daemon_without_re_json_or_click(world_venv, cli, home):
    cli("add", "x", "-s", "every 1h", "--", "true", check=True)
    cli("start", "--tick-interval", "1", check=True)
    try:
        wait_for(lambda: os.path.exists(home.heartbeat), timeout=30, what="the daemon's first heartbeat")
        script = os.path.join(world_venv, "hermes-cron")
        assert subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60).stdout.strip() \
            .endswith(__version__)  # (its first line names the venv's interpreter)
        for args in (["status"], ["status", "--json"]):
            r = subprocess.run([os.path.join(world_venv, "python"), "-X", "importtime", script, *args],
                               env=cli_env(home), capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            if args[-1] == "--json":
                report = json.loads(r.stdout)
                assert report["healthy"] is True and report["ticks"] >= 1 and report["jobs"]["enabled"] == 1
            else:
                assert "running, pid" in r.stdout and "last good tick:" in r.stdout, r.stdout
            loaded = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
            assert {"sqlite3", "hermes_cron.store.sqlite_status", "hermes_cron.logic.json_lite"} <= loaded  # (seen)
            assert sorted(loaded & set(STATUS_NEVER)) == [], args
    finally:
        cli("stop")


def test_where_hermes_lives_status_loads_neither_inspect_nor_typing(cli, home):
    """The Hermes section reads Hermes's jobs into our dataclasses: their docstrings keep
    dataclasses from needing inspect, which status defers as the daemon does (contract/lazy.py)."""
    cli("add", "x", "-s", "every 1h", "--", "true", check=True)
    job = {"id": "abc123def456", "name": "nightly", "enabled": True, "script": "n.sh",
           "schedule": {"kind": "cron", "expr": "0 3 * * *", "display": "0 3 * * *"}}
    fd = os.open(home.legacy_jobs, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, json.dumps({"jobs": [job]}).encode())
    os.close(fd)
    r = _run(home, "import sys, atexit\n"
                   "atexit.register(lambda: print('loaded:', *[n for n in ('inspect', 'typing', 'click')\n"
                   "    if type(sys.modules.get(n)).__name__ == 'module'], file=sys.stderr))\n"
                   "from hermes_cron.cli import main; main(['status'])")
    assert r.returncode == 3 and "1 Hermes job(s) fired by Hermes's own ticker" in r.stdout, r.stdout + r.stderr
    assert r.stderr.strip().splitlines()[-1] == "loaded:", r.stderr
