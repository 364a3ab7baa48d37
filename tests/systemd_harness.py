"""A throwaway, real systemd for tests.

`systemd --system` boots as PID 1 of private pid, mount, uts, ipc and cgroup namespaces (the
network is the host's). Its root is an overlay of the host's `/` whose upper layer is a tmpfs,
so whatever it writes (units, users, /var/lib, journals, a virtual environment) vanishes with
it and never reaches the host. /tmp, /var/tmp, /run and /dev are fresh inside, /sys and
/proc/sys are read-only, and the units that would touch the host's hardware or kernel settings
are masked. Needs root, util-linux (unshare, nsenter, setpriv) and overlayfs.

Clean-up leaves no process, mount or cgroup behind: the mounts exist only in the private mount
namespace; every process inside dies with PID 1 (it is the pid namespace's init); and the
whole tree runs in a cgroup of its own, which is emptied and removed. If the test process
itself is killed, the launcher dies with it (parent-death signal) and takes PID 1 along
(unshare --kill-child).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from conftest import wait_for

SYSTEMD = next((p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.path.exists(p)),
               "/lib/systemd/systemd")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PREFIX = "hermes-cron-test-"
# Passed from the host into commands run inside, so pip reaches the same package index.
PASS_ENV = ("PIP_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

# Units that would touch the host (kernel modules, sysctl, binfmt, udev, the clock) or wait for
# a terminal. Masked through /run, which is private inside.
MASKED = ("systemd-modules-load.service systemd-sysctl.service systemd-binfmt.service "
          "proc-sys-fs-binfmt_misc.automount systemd-udevd.service systemd-udev-trigger.service "
          "systemd-timesyncd.service systemd-random-seed.service systemd-hwdb-update.service "
          "getty.target console-getty.service")

# Runs as PID 1 of the new namespaces until the exec: build the root, then become systemd.
BOOT = r"""
set -eu
state=$1 masked=$2 systemd=$3
r=$state/rootfs
mkdir -p "$r"
mount -t tmpfs -o mode=755 hermes-cron-test "$r"
mkdir -p "$r/upper" "$r/work" "$r/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$r/upper,workdir=$r/work" "$r/root"
cd "$r/root"
mount -t proc proc proc
mount -t sysfs -o ro sysfs sys
mount --bind proc/sys proc/sys
mount -o remount,bind,ro proc/sys
mount -t cgroup2 -o nsdelegate cgroup2 sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid dev dev
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r d ma mi <<EOF
$n
EOF
  mknod -m 666 "dev/$d" c "$ma" "$mi"
done
mkdir dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts dev/pts
ln -s pts/ptmx dev/ptmx
ln -s /proc/self/fd dev/fd
touch dev/console
mount --bind "$state/console.log" dev/console
mount -t tmpfs -o mode=1777 tmp tmp
mount -t tmpfs -o mode=1777 vartmp var/tmp
mount -t tmpfs -o mode=755 run run
mkdir -p run/systemd/system
for u in $masked; do ln -s /dev/null "run/systemd/system/$u"; done
printf '[Unit]\nDescription=hermes-cron test boot\nWants=systemd-journald.socket systemd-journald.service\n' \
  > run/systemd/system/hermes-cron-test.target
mkdir -p oldroot
pivot_root . oldroot
umount -l /oldroot
hostname hermes-cron-test
exec env -i container=hermes-cron-test PATH=/usr/sbin:/usr/bin:/sbin:/bin "$systemd" \
  --system --unit=hermes-cron-test.target --show-status=no
"""


def _cgroup2_root() -> str | None:
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            if os.path.exists(os.path.join(path, "cgroup.procs")) and "cgroup2" in _fstype(path):
                return path
        except OSError:
            pass
    return None


def _fstype(path: str) -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                return fields[fields.index("-") + 1]
    return ""


def unavailable() -> str | None:
    """Why a real systemd can't be booted here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (boots a real systemd in private namespaces)"
    for tool in ("unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux)"
    if not os.path.exists(SYSTEMD):
        return f"systemd is not installed ({SYSTEMD} missing)"
    cg = _cgroup2_root()
    if cg is None:
        return "needs a cgroup2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)"
    if not os.access(cg, os.W_OK):
        return f"{cg} is not writable"
    probe = tempfile.mkdtemp(prefix="hermes-cron-probe-", dir="/tmp")
    try:
        proc = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--cgroup", "--propagation", "private",
             "--", "sh", "-ec", 'mount -t tmpfs probe "$0"; mkdir "$0/u" "$0/w" "$0/m"; '
             'mount -t overlay overlay -o "lowerdir=/,upperdir=$0/u,workdir=$0/w" "$0/m"; test -d "$0/m/etc"',
             probe], capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if proc.returncode != 0:
        return f"private namespaces with an overlay root are not allowed here: {proc.stderr.strip() or proc.returncode}"
    return None


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """conftest.wait_for at 10 Hz: each look inside costs a process or two."""
    return wait_for(predicate, timeout, 0.1, what)


def sweep_stale_cgroups() -> None:
    """Remove empty cgroups that an earlier, killed test session left behind."""
    root = _cgroup2_root()
    if root is None:
        return
    for entry in os.scandir(root):
        if entry.is_dir() and entry.name.startswith(CGROUP_PREFIX):
            _remove_cgroup(entry.path)


def _cgroup_pids(cg: str) -> list[str]:
    pids: list[str] = []
    for dirpath, _, _ in os.walk(cg):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids += f.read().split()
        except OSError:
            pass
    return pids


def _remove_cgroup(cg: str) -> bool:
    if _cgroup_pids(cg):
        return False
    for dirpath, _, _ in sorted(os.walk(cg), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
    return not os.path.exists(cg)


class Systemd:
    """One booted systemd; run commands in it with run(), reach its files with path()."""

    def __init__(self) -> None:
        self.state = tempfile.mkdtemp(prefix="hermes-cron-systemd-", dir="/tmp")
        self.cgroup = ""
        self.launcher: subprocess.Popen | None = None
        self.pid = 0  # systemd's pid, as the host sees it

    # boot and shutdown ------------------------------------------------------------------

    def boot(self, timeout: float = 30.0) -> None:
        sweep_stale_cgroups()
        root = _cgroup2_root()
        assert root is not None
        self.cgroup = os.path.join(root, f"{CGROUP_PREFIX}{os.getpid()}-{os.path.basename(self.state)}")
        os.mkdir(self.cgroup)
        Path(self.state, "console.log").touch()
        log = open(os.path.join(self.state, "launcher.log"), "wb")
        with log:
            # setpriv: die with the test process. sh: move into our cgroup, which the cgroup
            # namespace then shows as "/". unshare: the namespaces, and --kill-child.
            self.launcher = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", "sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"',
                 self.cgroup, "unshare", "--pid", "--mount", "--uts", "--ipc", "--cgroup", "--propagation",
                 "private", "--kill-child=SIGKILL", "--", "bash", "-c", BOOT, "boot", self.state, MASKED,
                 SYSTEMD],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            self.pid = int(wait_until(self._find_pid1, timeout, "systemd to start"))  # type: ignore[arg-type]
            wait_until(self._booted, timeout, "systemd to finish booting")
        except AssertionError as e:
            logs = self.logs()
            self.shutdown()
            raise AssertionError(f"{e}\n{logs}") from None

    def _find_pid1(self) -> int | None:
        assert self.launcher is not None
        if self.launcher.poll() is not None:
            raise AssertionError(f"the launcher exited ({self.launcher.returncode})\n{self.logs()}")
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    comm, rest = f.read().rsplit(")", 1)
            except OSError:
                continue
            if int(rest.split()[1]) == self.launcher.pid and comm.endswith("(systemd"):
                return int(entry.name)
        return None

    def _booted(self) -> bool:
        state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return True
        if state in ("stopping", "offline"):
            raise AssertionError(f"systemd is {state}")
        return False

    def logs(self) -> str:
        out = []
        for name in ("launcher.log", "console.log"):
            try:
                out.append(f"--- {name}\n" + Path(self.state, name).read_text(errors="replace")[-4000:])
            except OSError:
                pass
        return "\n".join(out)

    def shutdown(self) -> None:
        """Power off (kill PID 1 if that doesn't end it quickly), then remove the cgroup and state."""
        try:
            if self.launcher is not None and self.launcher.poll() is None:
                if self.pid:
                    self.run("systemctl", "poweroff", "--no-block", "--check-inhibitors=no", check=False, timeout=10)
                try:
                    self.launcher.wait(15)
                except subprocess.TimeoutExpired:
                    if self.pid:
                        os.kill(self.pid, 9)  # init dies: the kernel kills the whole pid namespace
                    self.launcher.kill()
                    self.launcher.wait(15)
            if self.cgroup:
                wait_until(lambda: not _cgroup_pids(self.cgroup), 15, f"{self.cgroup} to empty")
                if not _remove_cgroup(self.cgroup):
                    raise AssertionError(f"could not remove {self.cgroup}")
        finally:
            shutil.rmtree(self.state, ignore_errors=True)

    # using it ---------------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 60, user: str | None = None,
            env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside, as root (or `user`, with its HOME and XDG_RUNTIME_DIR), with a clean
        environment plus `env`."""
        base = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        base.update({k: v for k, v in os.environ.items() if k.startswith(PASS_ENV)})
        base.update(env or {})
        cmd = ["env", "-i", *(f"{k}={v}" for k, v in base.items())]
        if user is not None:
            cmd = ["sh", "-c", 'exec setpriv --reuid="$0" --regid="$(id -g "$0")" --init-groups -- "$@"', user, *cmd,
                   "sh", "-c", 'HOME=$(getent passwd "$(id -u)" | cut -d: -f6) XDG_RUNTIME_DIR=/run/user/$(id -u) '
                   'exec "$@"', "sh"]
        proc = subprocess.run(
            ["nsenter", f"--target={self.pid}", "--mount", "--pid", "--uts", "--ipc", "--cgroup", "--", *cmd, *argv],
            capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"inside: {shlex.join(argv)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
        return proc

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run("sh", "-ec", script, **kw)

    def path(self, inside: str) -> Path:
        """The host's way to a path inside (writes land in the overlay's tmpfs)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        p = self.path(inside)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)

    def copy_tree(self, host_dir: str, inside: str, ignore: Sequence[str] = ()) -> None:
        shutil.copytree(host_dir, self.path(inside), ignore=shutil.ignore_patterns(*ignore), symlinks=True)

    def show(self, unit: str, *props: str, user: str | None = None) -> dict[str, str]:
        scope = ["--user"] if user else []
        out = self.run("systemctl", *scope, "show", unit, *(f"--property={p}" for p in props), user=user).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
