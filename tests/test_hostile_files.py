"""Files in the home that someone planted or broke: symlinks, open modes, empty or foreign
databases, a full or read-only disk, a lookalike process. Each test checks that nothing outside
the home changed and that the fault is named truthfully, in one line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile

import pytest

from hermes_cron.contract.paths import JOBS_FILE
from conftest import cli_env, wait_for
from daemon_harness import kill_leftovers, pid_alive

# Real commands in real processes, a few hundred ms each: in the full run, not the quick one.
pytestmark = pytest.mark.slow


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    for run_id in ("0000000001", "0000000002"):
        (folder / run_id).mkdir(parents=True)
        (folder / run_id / "precious").write_text("keep me\n")
    (folder / "target").write_text("untouched\n")
    return folder


def snapshot(folder) -> dict[str, bytes]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, folder)] = open(path, "rb").read()
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), folder) + "/"] = b""
    return found


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


def history(cli, job: str) -> list[dict]:
    r = cli("history", job, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_symlinked_output_file_is_never_written_through(cli, home, outside):
    cli("add", "j", "-s", "@yearly", "--", "echo", "hello", check=True)
    folder = home.run_dir("j", 1)
    os.makedirs(folder, mode=0o700)
    os.symlink(outside / "target", os.path.join(folder, "output.log"))
    before = snapshot(outside)
    cli("trigger", "j", "--wait")
    assert snapshot(outside) == before
    run = history(cli, "j")[0]
    assert run["status"] == "failed" and "symbolic link" in run["reason"], run


def test_a_symlinked_run_folder_gets_no_files(cli, home, outside):
    cli("add", "j", "-s", "@yearly", "--", "echo", "hello", check=True)
    os.makedirs(home.job_runs("j"), mode=0o700)
    os.symlink(outside / "0000000001", home.run_dir("j", 1))
    before = snapshot(outside)
    cli("trigger", "j", "--wait")
    assert snapshot(outside) == before
    run = history(cli, "j")[0]
    assert run["status"] == "interrupted" and "symbolic link" in run["reason"], run


def test_pruning_through_a_symlinked_job_folder_deletes_nothing_outside(cli, home, outside):
    cli("add", "p", "-s", "@yearly", "--keep-runs", "1", "--", "true", check=True)
    for _ in range(2):
        assert cli("trigger", "p", "--wait").returncode == 0
    real = home.job_runs("p")
    os.rename(real, real + ".moved")
    os.symlink(outside, real)
    before = snapshot(outside)
    cli("trigger", "p", "--wait")
    cli("list")
    assert snapshot(outside) == before, "nothing outside the home was deleted or written"
    assert history(cli, "p")[0]["status"] == "interrupted"


def test_a_symlinked_state_database_is_refused(cli, home, outside):
    cli("add", "j", "-s", "@yearly", "--", "true", check=True)
    os.rename(home.state, str(outside / "state.db"))
    os.symlink(outside / "state.db", home.state)
    before = snapshot(outside)
    r = cli("list")
    assert r.returncode == 5 and "symbolic link" in one_line(r)
    assert snapshot(outside) == before


@pytest.mark.parametrize("which", ["home", "cron"])
def test_a_folder_others_can_write_is_refused(cli, home, which):
    cli("add", "j", "-s", "@yearly", "--", "true", check=True)
    path = home.root if which == "home" else home.cron
    os.chmod(path, 0o777)
    r = cli("list")
    assert r.returncode == 8 and "writable by group or others" in one_line(r) and "chmod go-w" in r.stderr


def test_every_file_is_private_under_umask_000(cli, home, tmp_path):
    env = cli_env(home)

    def run(*args: str, module: str = "hermes_cron") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                              umask=0, timeout=60)

    try:
        assert run("add", "j", "-s", "every 1s", "--", "sh", "-c", "echo out; echo err >&2").returncode == 0
        assert run("trigger", "j", "--wait").returncode == 0
        r = run("start", "--tick-interval", "0.5", "--heartbeat-every", "1")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: len(history_of(run, "j")) >= 3, 15, what="scheduled runs")
        run("add", "slow", "-s", "@yearly", "--", "sleep", "30")
        run("trigger", "slow")
        wait_for(lambda: any(r["status"] is None for r in history_of(run, "slow")), 10, what="a running job")
        run("--home", home.root, "status")
        subprocess.run([sys.executable, "-m", "hermes_cron_watchdog", "--once"], env=env, umask=0,
                       capture_output=True, timeout=30)
        assert run("stop", "--jobs", "--timeout", "5").returncode == 0
    finally:
        run("stop", "--jobs", "--timeout", "2")
        kill_leftovers(home)
    wrong = []
    for dirpath, dirnames, filenames in os.walk(home.root):
        for name in dirnames:
            mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, name)).st_mode)
            if mode != 0o700:
                wrong.append((os.path.join(dirpath, name), oct(mode)))
        for name in filenames:
            mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, name)).st_mode)
            if mode != 0o600:
                wrong.append((os.path.join(dirpath, name), oct(mode)))
    assert not wrong


def history_of(run, job: str) -> list[dict]:
    r = run("history", job, "--json")
    return json.loads(r.stdout) if r.returncode == 0 else []


def test_stop_never_signals_a_lookalike_whose_command_line_merely_mentions_the_daemon(cli, home):
    lookalike = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "hermes-cron", "run"])
    try:
        wait_for(lambda: open(f"/proc/{lookalike.pid}/cmdline", "rb").read().count(b"\0") >= 4, 5)
        argv = [a.decode() for a in open(f"/proc/{lookalike.pid}/cmdline", "rb").read().split(b"\0")[:-1]]
        fields = open(f"/proc/{lookalike.pid}/stat").read().rsplit(")", 1)[1].split()
        details = {"pid": lookalike.pid, "pid_start": int(fields[19]), "boot_id": None, "argv": argv,
                   "home": home.root}
        os.makedirs(home.cron, mode=0o700, exist_ok=True)
        with open(home.pidfile, "w") as f:
            f.write(f"{lookalike.pid}\n{json.dumps(details)}\n")
        os.chmod(home.pidfile, 0o600)
        r = cli("stop", "--timeout", "1")
        assert r.returncode == 0 and "not running" in r.stdout, r.stdout + r.stderr
        assert pid_alive(lookalike.pid) and lookalike.poll() is None, "the lookalike was never signalled"
    finally:
        lookalike.kill()
        lookalike.wait()


@pytest.mark.parametrize("content", [b"", b"this is not a database at all\n" * 10])
def test_an_empty_or_foreign_state_database_is_refused_and_kept(cli, home, content):
    cli("add", "j", "-s", "@yearly", "--", "true", check=True)
    with open(home.state, "wb") as f:
        f.write(content)
    jobs = open(home.jobs, "rb").read()
    for args in (["list"], ["history", "j"], ["trigger", "j"], ["start"]):
        r = cli(*args)
        assert r.returncode != 0 and "Traceback" not in r.stderr, (args, r.stderr)
        assert "state.db" in r.stderr and ("empty" in r.stderr or "not a usable" in r.stderr), r.stderr
    assert open(home.state, "rb").read() == content, "the file is kept as it is, never re-initialised"
    assert open(home.jobs, "rb").read() == jobs


def test_a_command_not_found_is_recorded_with_exit_127_and_the_reason(cli, home):
    cli("add", "ghost", "-s", "@yearly", "--", "/nonexistent/ghost-command", check=True)
    r = cli("trigger", "ghost", "--wait")
    assert r.returncode == 127
    run = history(cli, "ghost")[0]
    assert run["exit_code"] == 127 and "command not found" in run["reason"], run
    cli("add", "shghost", "-s", "@yearly", "--shell", "--", "no-such-command-anywhere", check=True)
    assert cli("trigger", "shghost", "--wait").returncode == 127
    run = history(cli, "shghost")[0]
    assert run["exit_code"] == 127 and "command not found" in run["reason"], run


@pytest.fixture
def small_disk():
    """A 256 KiB tmpfs, for a home on a disk that fills up (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tempfile.mkdtemp(prefix="hermes-cron-tmpfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", where], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"can't mount a tmpfs here: {r.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", where], capture_output=True)
    os.rmdir(where)


def _fill(folder: str) -> None:
    fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def test_a_full_disk_is_named_as_such(small_disk, cli, home):
    root = os.path.join(small_disk, "hermes")
    env = {"HERMES_HOME": root}
    cli("add", "a", "-s", "@yearly", "--", "true", check=True, **env)
    _fill(small_disk)
    jobs = open(os.path.join(root, "cron", JOBS_FILE), "rb").read()
    r = cli("add", "b", "-s", "@yearly", "--", "true", **env)
    line = one_line(r)
    assert r.returncode == 9 and "disk is full" in line and "corrupt" not in line, line
    r = cli("start", "--tick-interval", "0.5", "--heartbeat-every", "1", **env)
    line = one_line(r)
    assert r.returncode != 0 and "disk is full" in line, line
    r = cli("stop", **env)
    assert "Traceback" not in r.stderr and r.returncode == 0, r.stderr
    assert open(os.path.join(root, "cron", JOBS_FILE), "rb").read() == jobs


def test_a_read_only_home_is_named_as_such(small_disk, cli, home):
    root = os.path.join(small_disk, "hermes")
    env = {"HERMES_HOME": root}
    cli("add", "a", "-s", "@yearly", "--", "true", check=True, **env)
    subprocess.run(["mount", "-o", "remount,ro", small_disk], check=True)
    for args in (["start"], ["add", "b", "-s", "@yearly", "--", "true"], ["trigger", "a"], ["stop"]):
        r = cli(*args, **env)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        if args != ["stop"]:
            assert r.returncode != 0 and "read-only" in one_line(r), (args, r.stderr)


def test_a_timeout_longer_than_poll_can_wait_still_runs_the_job(cli, home):
    """poll() takes at most 2**31-1 ms (24.8 days); a 366-day timeout must not crash the supervisor."""
    cli("add", "long", "-s", "@yearly", "--timeout", "366d", "--kill-grace", "1d", "--", "true", check=True)
    r = cli("trigger", "long", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    assert history(cli, "long")[0]["status"] == "succeeded"
