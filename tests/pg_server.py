"""A throwaway PostgreSQL server for the tests: initdb and pg_ctl from Debian's `postgresql`
package, in a temporary folder, listening on a private port of 127.0.0.1 and a socket in that
folder. Started by the first test of a run that needs it (the others wait on a lock), stopped
when the run ends (conftest.py). Each test gets a database of its own."""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid

RUN_ENV = "HERMES_CRON_TEST_RUN"


def _bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return os.path.dirname(os.path.realpath(pg_ctl))
    raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")


def _as_server_user(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """initdb and postgres refuse to run as root: as root, run them as the `postgres` user."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def root_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"hermes-cron-pg-{os.environ.get(RUN_ENV) or os.getppid()}")


def server() -> str:
    """The server's base URL (no database), starting it first if no test process has yet."""
    root = root_dir()
    os.makedirs(root, exist_ok=True)
    ready = os.path.join(root, "ready")
    with open(os.path.join(root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(ready):
            _start(root)
        with open(ready) as f:
            port = int(f.read().strip())
    return f"postgresql://postgres@127.0.0.1:{port}"


def _start(root: str) -> None:
    bindir = _bin()
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    for d in (data, sock):
        os.makedirs(d, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(d, "postgres", "postgres")
    os.chmod(data, 0o700)
    r = _as_server_user([os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync",
                         "-E", "UTF8"], timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"initdb failed: {r.stderr[-2000:]}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200")
    log = os.path.join(root, "server.log")
    if os.geteuid() == 0:
        open(log, "a").close()
        shutil.chown(log, "postgres", "postgres")
    r = _as_server_user([os.path.join(bindir, "pg_ctl"), "-D", data, "-o", opts, "-l", log, "-w", "-t", "60",
                         "start"], timeout=90)
    if r.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed: {r.stderr[-2000:]} {open(log).read()[-2000:]}")
    with open(os.path.join(root, "ready"), "w") as f:
        f.write(str(port))


def stop(root: str | None = None) -> None:
    root = root or root_dir()
    data = os.path.join(root, "data")
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        _as_server_user([os.path.join(_bin(), "pg_ctl"), "-D", data, "-m", "immediate", "stop"], timeout=60)
    shutil.rmtree(root, ignore_errors=True)


def own_server(root: str) -> str:
    """A server of a test's own (one it may restart), in `root`; its base URL."""
    os.makedirs(root, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    _start(root)
    with open(os.path.join(root, "ready")) as f:
        return f"postgresql://postgres@127.0.0.1:{int(f.read())}"


def pg_ctl(action: str, *extra: str, root: str | None = None) -> subprocess.CompletedProcess:
    """Stop, start or restart a test server (a PostgreSQL restart, as a fault)."""
    root = root or root_dir()
    log = ["-l", os.path.join(root, "server.log")] if action in ("start", "restart") else []  # else it logs to our pipe
    return _as_server_user([os.path.join(_bin(), "pg_ctl"), "-D", os.path.join(root, "data"), "-w", "-t", "60",
                            *log, action, *extra], timeout=90)


def new_database(base: str) -> str:
    """A fresh database on the server; its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"
