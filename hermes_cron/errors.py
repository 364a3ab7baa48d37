"""The error types of hermes-cron: one root, a few specific kinds, each with its exit code."""

from __future__ import annotations


class HermesCronError(Exception):
    """Root of every error hermes-cron raises on purpose. `str()` is a one-line message."""

    exit_code = 1


class InvalidInput(HermesCronError):
    """Something the user typed is wrong: a schedule, a zone, a duration, a name, a command."""

    exit_code = 2


class JobNotFound(HermesCronError):
    exit_code = 3


class JobExists(HermesCronError):
    exit_code = 4


class StoreError(HermesCronError):
    """A store file is corrupted, unreadable or unsafe. The file is left as it is."""

    exit_code = 5


class LockBusy(HermesCronError):
    """Another process held a lock for longer than the bounded wait."""

    exit_code = 6

    def __init__(self, message: str, holder_pid: int | None = None):
        super().__init__(message)
        self.holder_pid = holder_pid


class TickLockBusy(LockBusy):
    """The tick lock is held by another process: another ticker (the Hermes agent's own, a
    library caller). Contention, not a failure of ours."""

    def __init__(self, message: str, holder_pid: int | None = None, holder_command: str | None = None):
        super().__init__(message, holder_pid)
        self.holder_command = holder_command


class LockFailed(HermesCronError):
    """Taking a lock failed for a reason other than contention (EMFILE, EACCES, ...)."""

    exit_code = 7

    def __init__(self, message: str, errno_name: str | None = None):
        super().__init__(message)
        self.errno_name = errno_name


class HomeError(HermesCronError):
    """HERMES_HOME is missing and can't be created, or is unusable."""

    exit_code = 8


class UnsafeHome(HomeError):
    """A folder or file of ours is a symbolic link, writable by others, or owned by someone else."""


class DamagedHome(HomeError):
    """Files in a user's home belong to root, left by an earlier release run as root."""


class FileSystemError(HermesCronError):
    """The file system refused: disk full, quota exhausted, read-only, permission denied, I/O error."""

    exit_code = 9


def os_fault(e: OSError, what: str) -> str:
    """A one-line message for an OSError that names the real fault, e.g. "can't write X: the disk is full"."""
    import errno

    names = {
        errno.ENOSPC: "the disk is full (ENOSPC)",
        errno.EDQUOT: "the disk quota is exhausted (EDQUOT)",
        errno.EROFS: "the file system is read-only (EROFS)",
        errno.EACCES: "permission denied (EACCES)",
        errno.EPERM: "operation not permitted (EPERM)",
        errno.EIO: "an I/O error (EIO)",
        errno.EMFILE: "too many open files (EMFILE)",
        errno.ELOOP: "it is a symbolic link, which is never followed (ELOOP)",
    }
    return f"{what}: {names.get(e.errno or 0, e.strerror or str(e))}"


def file_system_error(e: OSError, what: str) -> HermesCronError:
    """The error to raise for an OSError met while reading or writing our files."""
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO):
        return FileSystemError(os_fault(e, what))
    return HomeError(os_fault(e, what))


class DaemonError(HermesCronError):
    """The daemon could not be started, stopped or reached."""

    exit_code = 1


class AlreadyRunning(DaemonError):
    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid
