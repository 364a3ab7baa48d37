"""Private, atomic files: temporary file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import errno
import os
import stat

from .errors import HomeError, StoreError


def ensure_private_dir(path: str) -> None:
    """Create `path` (and parents) with mode 0700 if missing; HomeError if that fails."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise HomeError(f"can't create {path}: {e.strerror}") from None
    if not os.path.isdir(path):
        raise HomeError(f"{path} exists but is not a folder")


def atomic_write(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix.

    An existing file keeps its owner and mode (so root editing a user's store leaves it
    the user's); a new file gets `mode`. `durable` adds the fsyncs that make the new content
    survive a power cut, not just a crash of the process.
    """
    folder = os.path.dirname(path) or "."
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        if old is not None:
            if os.geteuid() == 0 and (old.st_uid, old.st_gid) != (0, 0):
                os.fchown(fd, old.st_uid, old.st_gid)
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
        else:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except BaseException:  # any failure, even an interrupt, must not leave the temp file
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:  # as above
        _unlink_quietly(tmp)
        raise
    if durable:
        fsync_dir(folder)


def fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def check_private_file(st: os.stat_result, path: str) -> None:
    """Refuse a store file that others could write, as cron refuses such crontabs."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise StoreError(
            f"{path} is writable by group or others (mode {mode:04o}), which would let them choose "
            f"what runs; refusing to use it. Fix it with: chmod 600 {path}"
        )
    uid = os.geteuid()
    if uid != 0 and st.st_uid not in (uid, 0):
        raise StoreError(f"{path} belongs to uid {st.st_uid}, not to you (uid {uid}); refusing to use it")


def read_private(path: str) -> bytes | None:
    """The bytes of a private store file, None if it doesn't exist; StoreError if unsafe or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StoreError(f"{path} is a symbolic link; refusing to follow it") from None
        raise StoreError(f"can't read {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path} is not a regular file")
        check_private_file(st, path)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as e:
        raise StoreError(f"can't read {path}: {e.strerror}") from None
    finally:
        os.close(fd)
