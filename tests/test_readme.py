"""README's tour, run as written: each line in a shell with the installed commands on PATH and a
home of its own (as after the first set-up command), each ending in success."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import wait_for

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tour() -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    block = text[text.index("## A short tour"):text.index("`list`, `show`, `next`, `status` and `history` take")]
    return [line[4:] for line in block.splitlines() if line.startswith("    ")]


def test_the_tour_runs_as_written(tmp_path):
    home = tmp_path / "user"
    home.mkdir()
    bin_dir = os.path.dirname(sys.executable)  # the venv the tests run from, as `.venv/bin` for a user
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMES", "NOTIFY_SOCKET"))}
    env.update(HOME=str(home), PATH=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin")
    lines = tour()
    assert lines[0] == 'export PATH="$PWD/.venv/bin:$PATH"'
    start = subprocess.run(["hermes-cron", "start"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert start.returncode == 0, start.stderr  # what the first set-up command does
    try:
        for line in lines[1:]:
            r = subprocess.run(["bash", "-c", line], env=env, cwd=tmp_path, capture_output=True, text=True,
                               timeout=60)
            assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
            if line.startswith("hermes-cron trigger hello"):
                assert "hello run 1: succeeded" in r.stdout
            if line.startswith("hermes-cron logs hello"):
                assert r.stdout == "hello from hermes-cron\n"
            if re.match(r"hermes-cron history$", line.split("#")[0].strip()):
                assert "hello" in r.stdout and "succeeded" in r.stdout
    finally:
        subprocess.run(["hermes-cron", "stop"], env=env, cwd=tmp_path, capture_output=True)
    wait_for(lambda: not os.path.exists(home / ".hermes" / "cron" / "hermes-cron.pid"), 10, what="the daemon gone")
