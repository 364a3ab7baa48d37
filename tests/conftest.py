"""Shared fixtures: a private HERMES_HOME per test, and the CLI run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from hermes_cron.contract.paths import Home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    root = tmp_path / "hermes"
    monkeypatch.setenv("HERMES_HOME", str(root))
    return Home(str(root))


def cli_env(home: Home, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["HERMES_HOME"] = home.root
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra)
    return env


@pytest.fixture
def cli(home: Home) -> Callable[..., subprocess.CompletedProcess]:
    """Run `hermes-cron ARGS...` as a user would, in a subprocess."""

    def run(*args: str, check: bool | None = None, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "hermes_cron", *args], capture_output=True, text=True,
            env=cli_env(home, **env), timeout=timeout,
        )
        if check is True and proc.returncode != 0:
            raise AssertionError(f"hermes-cron {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    return run


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _world_readable(path: str) -> bool:
    """Whether every folder on the way to `path` lets other users through."""
    path = os.path.realpath(path)
    while path != "/":
        if not os.stat(path).st_mode & 0o001:
            return False
        path = os.path.dirname(path)
    return True


@pytest.fixture(scope="session")
def world_venv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A virtual environment with hermes-cron installed that any user can run, for tests that
    run hermes-cron as another user. Built once per session, under /tmp, from an interpreter
    whose standard library other users can read (this one's may live in /root)."""
    import sysconfig

    candidates = [sys.executable, "/usr/bin/python3"]
    interpreter = next((c for c in candidates if os.path.exists(c)
                        and _world_readable(sysconfig.get_paths()["stdlib"] if c == sys.executable
                                            else "/usr/lib/python3")), None)
    if interpreter is None:
        pytest.skip("no Python whose standard library other users can read")
    import tempfile

    root = tempfile.mkdtemp(prefix="hermes-cron-venv-", dir="/tmp")
    os.chmod(root, 0o755)
    venv = os.path.join(root, "venv")
    subprocess.run([interpreter, "-m", "venv", venv], check=True, capture_output=True)
    import shutil

    # Installed from a clean copy of the sources: a build/ folder left in the working tree by an
    # earlier install would otherwise put modules that no longer exist into the wheel.
    project = os.path.join(root, "src")
    shutil.copytree(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), project,
                    ignore=shutil.ignore_patterns(".venv", "build", "dist", "*.egg-info", ".git", "__pycache__",
                                                  ".pytest_cache"))
    proc = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", project],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"installing hermes-cron into {venv} failed: {proc.stderr[-2000:]}")
    yield os.path.join(venv, "bin")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def hermes_bin() -> str:
    """The real Hermes agent's bin folder (tests/hermes_agent.py builds its venv once)."""
    from hermes_agent import hermes_venv

    return hermes_venv()


def pytest_configure(config) -> None:
    """The run's id, shared with the xdist workers (they inherit the environment): slow fixtures
    built once per run (the PostgreSQL server) are keyed by it."""
    if not hasattr(config, "workerinput"):
        import uuid

        from pg_server import RUN_ENV

        os.environ.setdefault(RUN_ENV, uuid.uuid4().hex[:12])


def pytest_unconfigure(config) -> None:
    if not hasattr(config, "workerinput"):
        from pg_server import stop

        stop()


@pytest.fixture(scope="session")
def pg_base() -> str:
    """The throwaway PostgreSQL server of this test run (tests/pg_server.py)."""
    from pg_server import server

    return server()


@pytest.fixture
def pg_url(pg_base: str) -> str:
    """A fresh database of its own on the test server."""
    from pg_server import new_database

    return new_database(pg_base)
