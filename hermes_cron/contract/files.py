"""Private files under the home, opened without following symbolic links.

Every folder of ours (`cron/` and everything below it) is opened component by component with
O_NOFOLLOW, relative to the descriptor of the folder above, and checked: a real folder, owned
by the expected user, not writable by group or others. Files are opened relative to their
folder's descriptor, with O_NOFOLLOW, and created 0600 whatever the umask (folders 0700).
Writes are atomic: a temporary file with a random name, created exclusively, then renamed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import namedtuple

from hermes_cron.errors import HomeError, StoreError, UnsafeHome, file_system_error

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR_FLAGS | os.O_NOFOLLOW
SMALL_FILE = 1 << 20  # the most we read of a file that should hold a few lines of JSON


def open_dir(path: str, ours: int, create: bool = False, owner: int | None = None) -> int:
    """Open the folder `path`, whose last `ours` components are folders of ours, and return its
    descriptor. Those components are opened without following symlinks and must be real
    folders owned by `owner` (default: this process's user) and not writable by group or
    others; with `create`, missing ones are made 0700. The part above them is the user's
    business (a home may well be a symlink). Raises FileNotFoundError if a folder of ours is
    missing and `create` is false, UnsafeHome if one is not safe."""
    parts = [p for p in path.split("/") if p]
    if ours > len(parts):
        raise ValueError(f"{path} has fewer than {ours} components")
    expected = os.geteuid() if owner is None else owner
    head = "/" + "/".join(parts[: len(parts) - ours])
    fd = os.open(head, _DIR_FLAGS)
    try:
        where = head.rstrip("/")
        for name in parts[len(parts) - ours:]:
            where = f"{where}/{name}"
            nfd = _open_child_dir(fd, name, where, create)
            os.close(fd)
            fd = nfd
            _check_dir(os.fstat(fd), where, expected)
        return fd
    except BaseException:  # never leak the descriptor, whatever went wrong
        os.close(fd)
        raise


def _open_child_dir(fd: int, name: str, where: str, create: bool) -> int:
    try:
        return _open_folder_of_ours(fd, name, where)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, 0o700, dir_fd=fd)
    except FileExistsError:
        pass
    nfd = _open_folder_of_ours(fd, name, where)
    if stat.S_IMODE(os.fstat(nfd).st_mode) != 0o700:
        os.fchmod(nfd, 0o700)  # the umask may have taken bits away, or (umask 000) added none
    return nfd


def _open_folder_of_ours(fd: int, name: str, where: str) -> int:
    """Open folder `name` in `fd` without following a symlink; UnsafeHome if it isn't a folder."""
    try:
        return os.open(name, _NOFOLLOW_DIR, dir_fd=fd)
    except NotADirectoryError:
        raise UnsafeHome(_not_a_folder(fd, name, where)) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeHome(_not_a_folder(fd, name, where)) from None
        raise


def _not_a_folder(fd: int, name: str, where: str) -> str:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return f"{where} is not a folder"
    if stat.S_ISLNK(st.st_mode):
        return f"{where} is a symbolic link; refusing to follow it (remove it, or move it away)"
    return f"{where} is not a folder"


def _check_dir(st: os.stat_result, where: str, owner: int) -> None:
    if st.st_uid != owner:
        raise UnsafeHome(f"{where} belongs to uid {st.st_uid}, not to uid {owner}; refusing to use it")
    refuse_if_open_to_others(st, where)


def refuse_if_open_to_others(st: os.stat_result, path: str) -> None:
    """A folder or store file that group or others can write is refused, as cron refuses such
    crontabs: they could swap files in the folder, or choose what runs."""
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o022 or stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeHome(f"{path} is writable by group or others (mode {mode:04o}), so they could swap "
                         f"files in it; refusing to use it. Fix it with: chmod go-w {path}")
    raise StoreError(f"{path} is writable by group or others (mode {mode:04o}), which would let them choose "
                     f"what runs; refusing to use it. Fix it with: chmod 600 {path}")


def ensure_private_dir(path: str, ours: int = 1) -> None:
    """Make sure the folder `path` exists (its last `ours` components made 0700 if missing);
    HomeError if that fails."""
    try:
        os.close(open_dir(path, ours, create=True))
    except OSError as e:
        raise file_system_error(e, f"can't create {path}") from None


def open_private(dir_fd: int, name: str, flags: int, owner: int | None = None) -> int:
    """Open file `name` in the folder `dir_fd` without following a symlink; a file it creates is
    0600 whatever the umask (and given to `owner`, when root writes for a user)."""
    # O_NONBLOCK: a FIFO planted where a file of ours should be must not hang us (it is refused)
    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeHome(f"{name} is not a regular file")
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
        if flags & os.O_CREAT:
            if st.st_nlink != 1:  # never write through a hard link to a file elsewhere
                raise UnsafeHome(f"{name} has {st.st_nlink} hard links; refusing to write it")
            if stat.S_IMODE(st.st_mode) != 0o600:
                os.fchmod(fd, 0o600)
            if owner is not None and st.st_uid != owner:
                os.fchown(fd, owner, -1)
        return fd
    except BaseException:  # never leak the descriptor
        os.close(fd)
        raise


def read_at(dir_fd: int, name: str, limit: int | None = SMALL_FILE, check=None, where: str | None = None) -> bytes | None:
    """The bytes of regular file `name` in `dir_fd` (at most `limit`), None if it doesn't exist.
    A symlink, a FIFO or a device is never read: it raises UnsafeHome. `check(stat, where)` may
    refuse the file on its metadata."""
    where = where or name
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeHome(f"{where} is a symbolic link; refusing to follow it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeHome(f"{where} is not a regular file")
        if check is not None:
            check(st, where)
        chunks, left = [], limit if limit is not None else st.st_size + (1 << 30)
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_small(path: str, ours: int = 1, owner: int | None = None) -> bytes | None:
    """read_at() for a path whose last `ours` folders are ours (and `owner`'s); None if it or a
    folder is missing, or can't be read safely."""
    folder, name = os.path.split(path)
    try:
        dfd = open_dir(folder, ours, owner=owner)
    except (OSError, HomeError):
        return None
    try:
        return read_at(dfd, name)
    except (OSError, HomeError):
        return None
    finally:
        os.close(dfd)


def atomic_write(path: str, data: bytes, durable: bool = True, ours: int = 1, owner: int | None = None) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix.

    The file is private (0600). The last `ours` folders of the path are folders of ours, opened
    without following symlinks (0 for a path the user chose, such as `export -o`). `owner`
    gives the new file to that user (root writing in a user's home). `durable` adds the fsyncs
    that make the new content survive a power cut, not just a crash of the process.
    """
    folder, name = os.path.split(path)
    dfd = open_dir(folder, ours, owner=owner) if ours else os.open(folder or ".", _DIR_FLAGS)
    try:
        write_at(dfd, name, data, durable, owner)
    finally:
        os.close(dfd)


def write_at(dir_fd: int, name: str, data: bytes, durable: bool = True, owner: int | None = None) -> None:
    """atomic_write() relative to an open folder."""
    tmp = f".{name}.{os.urandom(6).hex()}.tmp"  # not secrets: it loads OpenSSL (3 MB)
    fd = open_private(dir_fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, owner)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except BaseException:  # any failure, even an interrupt, must not leave the temp file
        os.close(fd)
        _unlink_quietly(dir_fd, tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)  # replaces a symlink, never follows it
    except BaseException:  # as above
        _unlink_quietly(dir_fd, tmp)
        raise
    if durable:
        os.fsync(dir_fd)


def _unlink_quietly(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def remove_tree(folder: str, name: str, ours: int) -> None:
    """Delete `folder/name` and everything in it, through descriptors: no symlink on the way, in
    the folder or inside it, is ever followed, so nothing outside the home can be deleted."""
    import shutil

    dfd = open_dir(folder, ours)
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeHome(f"{folder}/{name} is not a folder; it is left as it is")
        shutil.rmtree(name, dir_fd=dfd)
    finally:
        os.close(dfd)


def check_private_file(st: os.stat_result, path: str) -> None:
    """Refuse a store file that others could write, as cron refuses such crontabs."""
    refuse_if_open_to_others(st, path)
    uid = os.geteuid()
    if st.st_uid != uid:
        raise StoreError(f"{path} belongs to uid {st.st_uid}, not to uid {uid}; refusing to use it")


def read_private(path: str) -> bytes | None:
    """The bytes of a private store file in `cron/`, None if it doesn't exist; StoreError if it is
    unsafe or unreadable."""
    folder, name = os.path.split(path)
    try:
        dfd = open_dir(folder, 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise file_system_error(e, f"can't read {path}") from None
    try:
        return read_at(dfd, name, None, check_private_file, path)
    except UnsafeHome as e:
        raise StoreError(str(e)) from None
    except OSError as e:
        raise file_system_error(e, f"can't read {path}") from None
    finally:
        os.close(dfd)


class Signature(namedtuple("Signature", "ino mtime_ns size")):
    """Identifies one version of a file on disk (hermes-cron-jobs.json); any write, atomic or by
    hand, changes it. (A named tuple, like the contract's records: contract/heartbeat.py says why.)"""

    __slots__ = ()

    def text(self) -> str:
        return f"{self.ino}:{self.mtime_ns}:{self.size}"


MISSING = Signature(0, 0, 0)


def signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return MISSING
    except OSError as e:
        raise StoreError(f"can't read {path}: {e.strerror}") from None
    return Signature(st.st_ino, st.st_mtime_ns, st.st_size)


def fs_fault(path: str) -> str | None:
    """Why writes under `path`'s folder would fail, if the file system says so: read-only, full."""
    try:
        vfs = os.statvfs(path if os.path.isdir(path) else os.path.dirname(path) or ".")
    except OSError:
        return None
    if vfs.f_flag & os.ST_RDONLY:
        return "the file system is read-only (EROFS)"
    if vfs.f_bavail == 0 or (vfs.f_files and vfs.f_favail == 0):
        return "the disk is full (ENOSPC)"
    return None

