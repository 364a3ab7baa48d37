"""Who a process acts as on a home, decided once, before any file in it is read.

- The home's owner is read from the home folder itself, on an open descriptor.
- root on a home that belongs to another user becomes that user completely (groups, gid, uid),
  after its imports and before it touches the home, and gives its jobs that user's
  environment (HOME, USER, LOGNAME, SHELL and a plain PATH from the passwd entry), as cron does.
- Every folder from the home down is checked as OpenSSH's StrictModes does: owned by the user
  acting (root's own files in a user's home are reported as damage, with the repair command),
  and not writable by group or others. Folders above the home are not our business.
"""

from __future__ import annotations

import os
import stat
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Callable

from hermes_cron.errors import DamagedHome, HomeError, StoreError, UnsafeHome
from hermes_cron.contract.files import refuse_if_open_to_others

PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"
# The names in cron/ that are ours: none of them may be a symlink or belong to someone else.
# (jobs.json and .jobs.lock are the Hermes agent's: not ours to judge.)
OUR_NAMES = ("hermes-cron-jobs.json", "state.db", "state.db-wal", "state.db-shm", ".hermes-cron-jobs.lock",
             ".tick.lock",
             ".daemon.lock", ".ticker_heartbeat", "hermes-cron.pid", ".stopped", "runs", "daemon.log",
             "daemon.stderr", ".watchdog.json", ".watchdog.lock", "hermes-cron-hermes.json", ".daemon_seen")


def home_owner(root: str) -> tuple[int, int] | None:
    """(uid, gid) of the home folder, read on an open descriptor; None if it doesn't exist."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        if os.path.lexists(root):
            raise HomeError(f"{root} is not a folder") from None
        raise HomeError(f"can't create {root}: a part of that path is a file, not a folder") from None
    except OSError as e:
        raise HomeError(f"can't open {root}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        link = os.lstat(root)
    except OSError:
        link = None
    if link is not None and stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, st.st_uid):
        raise UnsafeHome(f"{root} is a symbolic link of uid {link.st_uid} to a folder of uid {st.st_uid}; "
                         "refusing to act on it (point --home at the folder itself)")
    return st.st_uid, st.st_gid


def settle(root: str, preload: Callable[[], None] | None = None) -> bool:
    """Decide who this process acts as on the home at `root`, become that user if we are root
    and the home is someone else's, then check the home's folders. Returns whether root became
    the home's owner. Raises HomeError (with a one-line message) for a home that is unsafe or
    damaged."""
    owner = home_owner(root)
    euid = os.geteuid()
    became = False
    if euid == 0 and owner is not None and owner[0] != 0:
        if preload is not None:
            preload()
        become(owner[0])
        became = True
    if owner is not None:
        check_home(root, os.geteuid())
    return became


def become(uid: int) -> None:
    """Drop root for good: the user's groups, gid and uid, and the user's environment."""
    import pwd

    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        raise HomeError(f"the home belongs to uid {uid}, which has no account (no passwd entry); "
                        "refusing to act for it") from None
    os.initgroups(user.pw_name, user.pw_gid)
    os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
    os.setresuid(uid, uid, uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - the kernel let us back: never go on as root by mistake
        os._exit(70)
    home = os.environ.get("HERMES_HOME")
    os.environ.clear()
    os.environ.update(user_environment(user))
    if home:
        os.environ["HERMES_HOME"] = home


def user_environment(user) -> dict[str, str]:  # user: pwd.struct_passwd
    """The environment cron gives a user's jobs: nothing of root's."""
    return {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name,
            "SHELL": user.pw_shell or "/bin/sh", "PATH": PLAIN_PATH}


def check_home(root: str, uid: int) -> None:
    """StrictModes for the home of user `uid`: the home, `cron/` and `cron/runs/` must be real
    folders of that user (or of root, for the home itself), not writable by group or others;
    no name of ours in `cron/` may be a symlink or someone else's. Files root left in a user's
    home raise DamagedHome, naming the repair command."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if st.st_uid not in (uid, 0):
            raise UnsafeHome(f"{root} belongs to uid {st.st_uid}, not to you (uid {uid}); refusing to use it")
        refuse_if_open_to_others(st, root)
        cron = _child(fd, "cron", f"{root}/cron", uid)
        if cron is None:
            return
        damaged: list[str] = []
        try:
            _owned(os.fstat(cron), f"{root}/cron", uid, damaged)
            for name in OUR_NAMES:
                path = f"{root}/cron/{name}"
                try:
                    est = os.stat(name, dir_fd=cron, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(est.st_mode):
                    what = UnsafeHome if name == "runs" else StoreError
                    raise what(f"{path} is a symbolic link; refusing to follow it (remove it)")
                _owned(est, path, uid, damaged)
            runs = _child(cron, "runs", f"{root}/cron/runs", uid)
            if runs is not None:
                try:
                    for name in os.listdir(runs):
                        est = os.stat(name, dir_fd=runs, follow_symlinks=False)
                        if not stat.S_ISLNK(est.st_mode):
                            _owned(est, f"{root}/cron/runs/{name}", uid, damaged)
                finally:
                    os.close(runs)
        finally:
            os.close(cron)
        if damaged:
            more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
            raise DamagedHome(f"{damaged[0]}{more} belong to root, left by hermes-cron run as root on this "
                              f"home; repair with: sudo hermes-cron --home {root} repair")
    finally:
        os.close(fd)


def _child(fd: int, name: str, path: str, uid: int) -> int | None:
    """Open folder `name` of ours in `fd` (None if missing), refusing a symlink or a non-folder."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeHome(f"{path} is a symbolic link; refusing to follow it (remove it, or move it away)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeHome(f"{path} is not a folder")
    _owned(st, path, uid, [])
    try:
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except PermissionError:
        if st.st_uid == 0 and os.geteuid() != 0:
            raise DamagedHome(f"{path} belongs to root, left by hermes-cron run as root on this home; "
                              f"repair with: sudo hermes-cron --home {os.path.dirname(os.path.dirname(path))} "
                              "repair") from None
        raise UnsafeHome(f"can't open {path}: permission denied") from None
    refuse_if_open_to_others(os.fstat(child), path)
    return child


def _owned(st: os.stat_result, path: str, uid: int, damaged: list[str]) -> None:
    if st.st_uid == uid:
        refuse_if_open_to_others(st, path)
    elif st.st_uid == 0:
        damaged.append(path)
    else:
        raise UnsafeHome(f"{path} belongs to uid {st.st_uid}, but the home is uid {uid}'s; the home's "
                         "folders disagree about their owner, refusing to use it")


def repair(root: str) -> list[str]:
    """As root: give back to the home's owner every file and folder in `cron/` that root left
    there. Nothing is followed (symlinks stay as they are), and nothing outside the home is
    touched. Returns the paths changed."""
    if os.geteuid() != 0:
        raise HomeError("repair gives root's leftovers back to the home's owner; run it as root")
    owner = home_owner(root)
    if owner is None:
        raise HomeError(f"{root} does not exist")
    uid, gid = owner
    if uid == 0:
        return []
    import pwd

    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        pass
    changed: list[str] = []
    home_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            cron = os.open("cron", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=home_fd)
        except FileNotFoundError:
            return changed
        try:
            if os.fstat(cron).st_uid == 0:
                os.fchown(cron, uid, gid)
                changed.append(f"{root}/cron")
            for top, dirs, files, top_fd in os.fwalk(".", dir_fd=cron, follow_symlinks=False):
                for name in dirs + files:
                    st = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
                    if st.st_uid != 0 or (stat.S_ISREG(st.st_mode) and st.st_nlink > 1):
                        continue  # not root's, or a hard link to who knows what
                    os.chown(name, uid, gid, dir_fd=top_fd, follow_symlinks=False)
                    changed.append(os.path.normpath(f"{root}/cron/{top}/{name}"))
        finally:
            os.close(cron)
    finally:
        os.close(home_fd)
    return changed
