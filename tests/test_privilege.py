"""root acting on a user's home, and the attacks that user could try on root: each test plays
the exploit for real, with a real unprivileged user made for the session, and checks that
nothing outside the home changed and that nothing ran as root."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import wait_for
from daemon_harness import kill_leftovers, pid_alive
from hermes_cron.contract.paths import JOBS_FILE
from hermes_cron.contract.paths import Home

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root and a real user")]


class User:
    """A real unprivileged account, with its own folder under a world-traversable temporary one."""

    def __init__(self, name: str, base: str):
        self.name = name
        self.dir = os.path.join(base, name)
        os.mkdir(self.dir, 0o700)
        # A uid far from the ones other tests give their users (the systemd tests make uid 1001).
        uid = next(u for u in range(40000 + os.getpid() % 10000, 60000) if not _uid_taken(u))
        subprocess.run(["useradd", "-M", "-u", str(uid), "-d", self.dir, "-s", "/bin/sh", name], check=True,
                       capture_output=True)
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        os.chown(self.dir, self.uid, self.gid)

    def home(self, name: str = "hermes") -> Home:
        """A fresh HERMES_HOME of this user's (the folder only, as Hermes would leave it)."""
        root = os.path.join(self.dir, name)
        os.mkdir(root, 0o700)
        os.chown(root, self.uid, self.gid)
        return Home(root)

    def remove(self) -> None:
        subprocess.run(["pkill", "-KILL", "-u", self.name], capture_output=True)
        subprocess.run(["userdel", self.name], capture_output=True)


def _uid_taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def people():
    base = tempfile.mkdtemp(prefix="hermes-cron-priv-", dir="/tmp")
    os.chmod(base, 0o755)
    tag = f"{os.getpid() % 100000}"
    alice, bob = User(f"hcalice{tag}", base), User(f"hcbob{tag}", base)
    yield alice, bob
    alice.remove()
    bob.remove()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def outside():
    """A folder outside every home (that any user can reach), with a file and a folder whose fate
    the tests watch."""
    import pathlib

    base = tempfile.mkdtemp(prefix="hermes-cron-outside-", dir="/tmp")
    os.chmod(base, 0o755)
    folder = pathlib.Path(base) / "outside"
    (folder / "0000000001").mkdir(parents=True)
    (folder / "0000000001" / "precious").write_text("keep me\n")
    (folder / "target").write_text("untouched\n")
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(base, ignore_errors=True)


def as_root(home: Home, *args: str, env_extra: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    env.update(HERMES_HOME=home.root, ROOT_SECRET="s3cret-of-root", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "hermes_cron", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd="/")


def as_user(user: User, venv: str, home: Home, *args: str) -> subprocess.CompletedProcess:
    env = {"HERMES_HOME": home.root, "PATH": "/usr/bin:/bin", "HOME": user.dir}
    return subprocess.run([os.path.join(venv, "hermes-cron"), *args], env=env, capture_output=True, text=True,
                          user=user.uid, group=user.gid, extra_groups=[], timeout=60, cwd="/")


def owners(root: str) -> set[int]:
    found = {os.lstat(root).st_uid}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.lstat(os.path.join(dirpath, name)).st_uid)
    return found


def uids_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    return []


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    return lines[0]


def cleanup(home: Home) -> None:
    as_root(home, "stop", "--jobs", "--timeout", "2")
    kill_leftovers(home)


def test_root_on_a_users_home_without_cron_folder_runs_jobs_as_the_user_with_the_users_environment(people):
    alice, _ = people
    home = alice.home()
    try:
        r = as_root(home, "add", "who", "-s", "@yearly", "--shell", "--", "id -u; id -G; pwd; env | sort")
        assert r.returncode == 0, r.stderr
        r = as_root(home, "trigger", "who", "--wait")
        assert r.returncode == 0, r.stderr
        out = open(os.path.join(home.run_dir("who", 1), "output.log")).read().splitlines()
        assert out[0] == str(alice.uid) and out[1] == str(alice.gid), out
        assert out[2] == alice.dir, "the default working directory is the user's home"
        env = dict(line.split("=", 1) for line in out[3:] if "=" in line)
        assert env["HOME"] == alice.dir and env["USER"] == env["LOGNAME"] == alice.name
        assert env["SHELL"] == "/bin/sh" and env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
        assert "ROOT_SECRET" not in env and not any("s3cret" in v for v in env.values())
        assert owners(home.root) == {alice.uid}, "every file stays the user's"
    finally:
        cleanup(home)


def test_root_only_installation_works_on_a_users_home(people, tmp_path):
    """root's own Python may be unreadable by the user: everything is imported before the drop."""
    alice, _ = people
    hidden = tempfile.mkdtemp(prefix="hermes-cron-rootonly-", dir="/tmp")
    os.chmod(hidden, 0o700)
    home = alice.home("rootonly")
    try:
        venv = os.path.join(hidden, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
        project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", project], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        env = dict(os.environ, HERMES_HOME=home.root)
        exe = os.path.join(venv, "bin", "python")
        for args in (["add", "j", "-s", "@yearly", "--", "id", "-u"], ["list"], ["show", "j"],
                     ["trigger", "j", "--wait"], ["history", "j"], ["logs", "j"], ["status", "--json"]):
            r = subprocess.run([exe, "-I", "-m", "hermes_cron", *args], env=env, capture_output=True, text=True,
                               cwd="/", timeout=60)
            assert "Traceback" not in r.stderr and "No module named" not in r.stderr, (args, r.stderr)
            assert r.returncode in (0, 3), (args, r.returncode, r.stderr)
        assert open(os.path.join(home.run_dir("j", 1), "output.log")).read().strip() == str(alice.uid)
        r = subprocess.run([exe, "-I", "-m", "hermes_cron", "start"], env=env, capture_output=True, text=True,
                           cwd="/", timeout=60)
        assert r.returncode != 0 and "can't read" in one_line(r), "start says why the user can't run it"
    finally:
        shutil.rmtree(hidden, ignore_errors=True)


def test_a_home_whose_folders_disagree_about_their_owner_is_refused(people):
    alice, bob = people
    home = alice.home("mixed")
    os.mkdir(home.cron, 0o700)
    os.chown(home.cron, bob.uid, bob.gid)
    r = as_root(home, "list")
    assert r.returncode == 8 and "disagree" in one_line(r) and str(bob.uid) in r.stderr
    assert not os.listdir(home.cron), "nothing was written"


def test_the_watchdog_never_runs_the_command_a_user_planted_in_the_pidfile(people, outside, world_venv):
    alice, _ = people
    home = alice.home("planted")
    r = as_root(home, "add", "ok", "-s", "@yearly", "--", "true")
    assert r.returncode == 0, r.stderr
    pwned = outside / "pwned"
    os.chmod(outside, 0o777)  # the user's payload could write here: it must never run at all
    sleeper = subprocess.Popen(["sleep", "60"], user=alice.uid, group=alice.gid)
    try:
        details = {"pid": sleeper.pid, "pid_start": 1, "boot_id": None, "home": home.root,
                   "argv": ["/bin/sh", "-c", f"id -u > {pwned}"]}
        with open(home.pidfile, "w") as f:
            f.write(f"{sleeper.pid}\n{json.dumps(details)}\n")
        os.chown(home.pidfile, alice.uid, alice.gid)
        for name in ("daemon.stderr", ".watchdog.json"):  # root must neither write nor chown through these
            os.symlink(str(outside / "target"), os.path.join(home.cron, name))
            os.lchown(os.path.join(home.cron, name), alice.uid, alice.gid)
        log = os.path.join(os.path.dirname(str(outside)), "dog.log")
        dog = subprocess.Popen([sys.executable, "-m", "hermes_cron_watchdog", "--home", home.root, "--check-every",
                                "0.2", "--log-format", "json", "--log-file", log, "--",
                                "--tick-interval", "0.5", "--heartbeat-every", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            def started():
                try:
                    return [json.loads(line) for line in open(log) if '"watchdog.started"' in line
                            or '"watchdog.start_failed"' in line]
                except OSError:
                    return None
            events = wait_for(started, 20, what="the watchdog to start a daemon")
            assert events[0]["event"] == "watchdog.start_failed", "daemon.stderr is a symlink: refused"
            os.unlink(os.path.join(home.cron, "daemon.stderr"))
            info = wait_for(lambda: _daemon_info(home), 30, what="a daemon started by the watchdog")
            assert uids_of(info["pid"]) == [alice.uid] * 4, "the daemon runs as the home's owner"
            assert info["argv"][1:3] == ["-m", "hermes_cron"]
        finally:
            dog.send_signal(signal.SIGTERM)
            dog.wait(10)
        assert not pwned.exists(), "the planted command never ran"
        assert (outside / "target").read_text() == "untouched\n", "nothing was written through the symlink"
        assert os.stat(outside / "target").st_uid == 0, "nothing was chowned through the symlink"
        assert owners(home.root) == {alice.uid}, "the watchdog's files are the user's"
        assert pid_alive(sleeper.pid), "the process the pidfile named was never signalled"
    finally:
        sleeper.kill()
        sleeper.wait()
        cleanup(home)


def _daemon_info(home: Home) -> dict | None:
    try:
        lines = open(home.pidfile).read().splitlines()
        info = json.loads(lines[1])
    except (OSError, ValueError, IndexError):
        return None
    return info if pid_alive(info["pid"]) and info["argv"] and "run" in info["argv"] else None


def test_a_renamed_cron_folder_can_not_steer_a_daemon_root_started(people, outside, world_venv):
    alice, _ = people
    home = alice.home("steer")
    os.chmod(home.root, 0o755)
    os.chmod(alice.dir, 0o755)
    try:
        r = as_root(home, "add", "ok", "-s", "@yearly", "--", "true")
        assert r.returncode == 0, r.stderr
        # The daemon root starts runs as alice: only her Python can be used, so use one she can read.
        env = dict(os.environ, HERMES_HOME=home.root)
        r = subprocess.run([os.path.join(world_venv, "hermes-cron"), "start", "--tick-interval", "0.5",
                            "--heartbeat-every", "1"], env=env, capture_output=True, text=True, cwd="/", timeout=60)
        assert r.returncode == 0, r.stderr
        daemon = _daemon_info(home)
        assert daemon and uids_of(daemon["pid"]) == [alice.uid] * 4
        stamp = outside / "uid"
        os.chmod(outside, 0o777)
        # alice swaps the folder for one of her own, with a job of her choosing
        def swap():
            os.rename(home.cron, home.cron + ".old")
            os.mkdir(home.cron, 0o700)
            doc = {"version": 1, "jobs": [{"name": "evil", "command": ["/bin/sh", "-c", f"id -u > {stamp}"],
                                           "schedule": "every 1s", "tz": "UTC"}]}
            with open(os.path.join(home.cron, JOBS_FILE), "w") as f:
                json.dump(doc, f)
            os.chmod(os.path.join(home.cron, JOBS_FILE), 0o600)
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(alice.gid)
                os.setuid(alice.uid)
                swap()
            finally:
                os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0
        wait_for(lambda: stamp.exists() and stamp.read_text().strip(), 20, what="the planted job to run")
        assert stamp.read_text().strip() == str(alice.uid), "whatever runs, runs as the home's owner"
    finally:
        subprocess.run([os.path.join(world_venv, "hermes-cron"), "stop", "--jobs", "--timeout", "2"],
                       env=dict(os.environ, HERMES_HOME=home.root), capture_output=True)
        if os.path.isdir(home.cron + ".old"):
            subprocess.run([os.path.join(world_venv, "hermes-cron"), "stop", "--timeout", "2"],
                           env=dict(os.environ, HERMES_HOME=home.root), capture_output=True)
        kill_leftovers(home)
        for proc in _processes_of(alice.uid):
            os.kill(proc, signal.SIGKILL)


def _processes_of(uid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    found.append(int(name))
            except OSError:
                pass
    return found


def test_files_root_left_in_a_users_home_are_named_with_the_repair(people, world_venv):
    alice, _ = people
    home = alice.home("damaged")
    r = as_root(home, "add", "a", "-s", "@daily", "--", "true")
    assert r.returncode == 0, r.stderr
    for path in (home.jobs, home.state):  # as an earlier release left them
        os.chown(path, 0, 0)
    os.chown(home.runs, 0, 0)
    before = open(home.jobs, "rb").read()
    r = as_user(alice, world_venv, home, "list")
    line = one_line(r)
    assert r.returncode == 8 and "to root" in line and "repair" in line, line
    r = as_root(home, "repair")
    assert r.returncode == 0 and "gave" in r.stdout, r.stderr
    assert owners(home.root) == {alice.uid}
    r = as_user(alice, world_venv, home, "list")
    assert r.returncode == 0 and "a " in r.stdout, r.stderr
    assert open(home.jobs, "rb").read() == before


def test_repair_never_follows_a_symlink_out_of_the_home(people, outside):
    alice, _ = people
    home = alice.home("repair-link")
    os.mkdir(home.cron, 0o700)
    os.chown(home.cron, alice.uid, alice.gid)
    os.symlink(str(outside / "target"), os.path.join(home.cron, "daemon.log"))
    os.symlink(str(outside / "0000000001"), os.path.join(home.cron, "runs"))
    r = as_root(home, "repair")
    assert r.returncode == 0, r.stderr
    assert os.stat(outside / "target").st_uid == 0 and os.stat(outside / "0000000001" / "precious").st_uid == 0
