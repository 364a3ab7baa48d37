"""The units' sandboxing must not erode: `systemd-analyze security --offline=yes` scores each unit
file, as scripts/install-systemd would install it, and the score may only go down.

No booted systemd needed. Each unit is scored in a root of its own (--root), so units or
drop-ins installed on this machine can't change its score. systemd-analyze can't combine --user
with --root, so the user units are scored as if they were system units: their figures are
comparable only with each other over time."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The current figures (0 is best, 10 worst). Lower one when hardening improves it; never raise it.
MAX_EXPOSURE = {
    "system/hermes-cron.service": 3.3,
    "system/hermes-cron-watchdog.service": 1.2,
    "user/hermes-cron.service": 9.6,
    "user/hermes-cron-watchdog.service": 5.9,
}

OVERALL = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def exposure(unit: str, tmp_path: Path) -> float:
    """The overall exposure of systemd/`unit`, with the installer's placeholders filled in."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    root = tmp_path / unit.replace("/", "-")
    target = root / "etc/systemd/system" / Path(unit).name
    target.parent.mkdir(parents=True)
    text = (REPO / "systemd" / unit).read_text()
    target.write_text(text.replace("@BINDIR@", "/opt/hermes-cron/venv/bin").replace("@HERMES_HOME@", "%h/.hermes"))
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""}
    proc = subprocess.run([analyze, "security", "--offline=yes", f"--root={root}", "--no-pager", str(target)],
                          capture_output=True, text=True, env=env, timeout=60)
    found = OVERALL.search(proc.stdout)
    if found is None and "offline" in proc.stderr and ("unrecognized" in proc.stderr or "Unknown" in proc.stderr):
        pytest.skip(f"this systemd-analyze has no --offline (systemd 250 or later): {proc.stderr.strip()}")
    assert found, f"no overall exposure level in the output of systemd-analyze:\n{proc.stdout}\n{proc.stderr}"
    return float(found.group(1))


@pytest.mark.parametrize("unit", sorted(MAX_EXPOSURE))
def test_exposure_does_not_get_worse(unit, tmp_path):
    score = exposure(unit, tmp_path)
    assert score <= MAX_EXPOSURE[unit], f"{unit} exposure rose to {score} (was {MAX_EXPOSURE[unit]})"
