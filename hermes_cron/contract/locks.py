"""File locks with a bounded wait, telling contention apart from failure.

These are flock(2) locks, the same kind that the `filelock` package takes on Unix, so a
process using that package and one using this module exclude each other. The wait always
has a deadline: contention ends in LockBusy naming the holder, any other error in
LockFailed naming the errno (EMFILE, EACCES, ...), never in an endless retry.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from hermes_cron.errors import LockBusy, LockFailed


class FileLock:
    """An exclusive flock on `path`, held by this object until release()."""

    def __init__(self, path: str, what: str, owner: int | None = None):
        self.path = path
        self.what = what
        self.owner = owner  # root locking in a user's home: a new lock file is given to them
        self._fd: int | None = None

    def acquire(self, timeout: float) -> FileLock:
        """Take the lock, waiting at most `timeout` seconds (0: don't wait)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        except OSError as e:
            raise self._failed(e) from None
        try:
            _settle_lock_file(fd, self.owner)
        except OSError as e:
            os.close(fd)
            raise self._failed(e) from None
        deadline = time.monotonic() + timeout
        delay = 0.001
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._fd = fd
                    return self
                except BlockingIOError:
                    pass
                except OSError as e:
                    raise self._failed(e) from None
                left = deadline - time.monotonic()
                if left <= 0:
                    holder = holder_pid(fd)
                    by = f" by pid {holder}" if holder else ""
                    raise LockBusy(
                        f"{self.what} ({self.path}) is held{by}; gave up after {timeout:g} s", holder
                    )
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.05)
        except BaseException:  # never leak the descriptor, whatever ends the wait
            if self._fd is None:
                os.close(fd)
            raise

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock

    def write_note(self, text: str) -> None:
        """Record who holds the lock inside the lock file (for messages to other processes)."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _failed(self, e: OSError) -> LockFailed:
        name = errno.errorcode.get(e.errno or 0, str(e.errno))
        return LockFailed(f"can't lock {self.what} ({self.path}): {name}: {e.strerror}", name)


def _settle_lock_file(fd: int, owner: int | None) -> None:
    """A lock file we own is private whatever the umask; one made by root for a user is theirs.
    (Another program sharing the lock may have made it its own way: that is tolerated.)"""
    import stat

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    if owner is not None and st.st_uid == os.geteuid() != owner:
        if st.st_nlink != 1:  # never give away a file that is also somewhere else
            raise OSError(errno.EMLINK, "the lock file has other hard links")
        os.fchown(fd, owner, -1)
    elif st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o600 and not stat.S_IMODE(st.st_mode) & 0o044:
        os.fchmod(fd, 0o600)


def holder_pid(fd: int) -> int | None:
    """The pid holding a flock on the file open at `fd`, from /proc/locks (Linux), if visible."""
    try:
        st = os.fstat(fd)
        key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if "->" in parts:  # a waiter, not the holder
                    continue
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key:
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def read_note(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""
