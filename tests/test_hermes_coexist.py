"""hermes-cron and the real Hermes agent (from PyPI) on one HERMES_HOME: Hermes's own CLI and
ticker, and our daemon and commands, each with its jobs; nobody's data changes but through its
owner, and a store hermes-cron 0.1 left in Hermes's jobs.json survives Hermes's ticker."""

from __future__ import annotations

import json
import os

import pytest

from conftest import wait_for
from daemon_harness import finished
from hermes_agent import hermes
from test_daemon import add, daemons  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

STAMP = "#!/bin/sh\necho \"$(date +%s)\" >> \"$HERMES_HOME/stamped\"\necho stamped\n"


def hermes_job(hermes_bin: str, home) -> str:
    """A Hermes script job (no model, local delivery), as a Hermes user creates one; its id."""
    scripts = os.path.join(home.root, "scripts")
    os.makedirs(scripts, exist_ok=True)
    with open(os.path.join(scripts, "stamp.sh"), "w") as f:
        f.write(STAMP)
    os.chmod(os.path.join(scripts, "stamp.sh"), 0o755)
    r = hermes(hermes_bin, home.root, "cron", "create", "--name", "stamp", "--deliver", "local", "--script",
               "stamp.sh", "--no-agent", "every 1m")
    assert r.returncode == 0, r.stdout + r.stderr
    [job] = json.load(open(home.legacy_jobs))["jobs"]
    return job["id"]


def snapshot(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_hermes_and_hermes_cron_keep_their_own_jobs(hermes_bin, cli, home, daemons):
    add(cli, "native", "every 1s", "true")
    ours = snapshot(home.jobs)
    d = daemons()
    d.wait_started()
    job_id = hermes_job(hermes_bin, home)
    # Hermes runs its job itself (`cron run` runs it at once; `cron tick` is its own ticker)
    assert hermes(hermes_bin, home.root, "cron", "run", job_id).returncode == 0
    for _ in range(3):
        r = hermes(hermes_bin, home.root, "cron", "tick")
        assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(home.root, "stamped")), "Hermes's job ran through Hermes"
    theirs = snapshot(home.legacy_jobs)
    # our commands and daemon go on, and never write Hermes's file
    assert cli("list").returncode == 0 and cli("status").returncode == 0
    assert cli("edit", "native", "--timeout", "30s").returncode == 0
    ours = snapshot(home.jobs)
    count = len(finished(home, "native"))
    wait_for(lambda: len(finished(home, "native")) >= count + 3, 15, what="native runs beside Hermes")
    assert snapshot(home.legacy_jobs) == theirs, "hermes-cron never writes Hermes's jobs.json"
    # Hermes's ticker and CLI never touch ours, and read their own file fine
    for args in (("cron", "tick"), ("cron", "list"), ("cron", "status")):
        r = hermes(hermes_bin, home.root, *args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert snapshot(home.jobs) == ours, "Hermes never writes hermes-cron's store"
    listed = hermes(hermes_bin, home.root, "cron", "list").stdout
    assert job_id in listed and "stamp" in listed
    assert not d.events("tick.failed") and d.stop() == 0


def test_a_01_store_in_jobs_json_moves_before_hermes_can_clobber_it(hermes_bin, cli, home):
    add(cli, "keep", "every 1h", "true")
    assert cli("trigger", "keep", "--wait").returncode == 0
    os.rename(home.jobs, home.legacy_jobs)  # as hermes-cron 0.1 left it
    legacy = snapshot(home.legacy_jobs)
    r = cli("status")
    assert "moved hermes-cron's job store" in r.stderr
    assert snapshot(home.jobs) == legacy
    # Hermes now makes its own jobs.json and ticks; ours keeps its job and history
    job_id = hermes_job(hermes_bin, home)
    assert hermes(hermes_bin, home.root, "cron", "tick").returncode == 0
    assert snapshot(home.jobs) == legacy
    assert [j["id"] for j in json.load(open(home.legacy_jobs))["jobs"]] == [job_id]
    listed = cli("list")
    assert listed.returncode == 0 and "keep" in listed.stdout
    assert "succeeded" in cli("history", "keep").stdout
