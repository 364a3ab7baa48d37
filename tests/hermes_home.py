"""Helpers for tests that drive the real Hermes agent on a home hermes-cron serves: script jobs
made with `hermes cron create` (no model, local delivery), and Hermes's own records read with
Hermes's own code."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone

from hermes_agent import hermes


def script(home, name: str, body: str) -> None:
    folder = os.path.join(home.root, "scripts")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)


def create(hermes_bin: str, home, name: str, schedule: str, script_name: str) -> str:
    """A Hermes script job, as a Hermes user creates one; its id."""
    r = hermes(hermes_bin, home.root, "cron", "create", "--name", name, "--deliver", "local", "--script",
               script_name, "--no-agent", schedule)
    assert r.returncode == 0, r.stdout + r.stderr
    return next(j["id"] for j in hermes_jobs(home) if j["name"] == name)


def hermes_jobs(home) -> list[dict]:
    try:
        with open(home.legacy_jobs) as f:
            return json.load(f)["jobs"]
    except FileNotFoundError:
        return []


def hermes_job(home, job_id: str) -> dict | None:
    return next((j for j in hermes_jobs(home) if j["id"] == job_id), None)


def hermes_python(hermes_bin: str, home, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_CRON")}
    env.update(HERMES_HOME=home.root, HOME=os.path.dirname(home.root))
    return subprocess.run([os.path.join(hermes_bin, "python"), "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=os.path.dirname(home.root))


def executions(hermes_bin: str, home, job_id: str | None = None) -> list[dict]:
    """Hermes's own execution records (newest first), read with Hermes's own code."""
    r = hermes_python(hermes_bin, home, "import json\nfrom cron.executions import list_executions\n"
                      f"print(json.dumps(list_executions(job_id={job_id!r}, limit=500)))")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def epoch(iso: str) -> float:
    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def enable(cli, hermes_bin: str, *extra: str) -> subprocess.CompletedProcess:
    r = cli("hermes", "enable", "--python", os.path.join(hermes_bin, "python"), *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return r
