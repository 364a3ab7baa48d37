"""The real Hermes agent, from PyPI, in a virtual environment of its own (its dependencies never
mix with ours), built once and shared by every test process of a run (and by later runs while
the version stays the same)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time

# The hermes-agent versions the tests are run against: pinned here, and only here.
HERMES_AGENT = "hermes-agent>=0.19.0,<0.20"


def hermes_venv() -> str:
    """The venv's bin folder, building it first if no test process has yet."""
    tag = HERMES_AGENT.replace(">=", "-ge-").replace("<", "-lt-").replace(",", "_")
    root = os.path.join(tempfile.gettempdir(), f"hermes-cron-tests-{tag}")
    os.makedirs(root, exist_ok=True)
    ready = os.path.join(root, "ready")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other test processes wait for the one that builds
        if not os.path.exists(ready):
            venv = os.path.join(root, "venv")
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True, capture_output=True)
            proc = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", HERMES_AGENT],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"installing {HERMES_AGENT} failed: {proc.stderr[-2000:]}")
            with open(ready, "w") as f:
                f.write(f"{HERMES_AGENT} installed in {time.monotonic() - t0:.0f} s\n")
    return os.path.join(root, "venv", "bin")


def hermes(bin_dir: str, home: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`hermes ARGS...` on `home`, as a Hermes user would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERMES_CRON")}
    env.update(HERMES_HOME=home, HOME=os.path.dirname(home), NO_COLOR="1")
    return subprocess.run([os.path.join(bin_dir, "hermes"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(home))
