"""Log setup: structlog events, readable on a terminal, JSON lines in files, key=value under
journald (which stamps its own time, so no timestamp of ours is added there)."""

from __future__ import annotations

# Before anything that imports them (logging brings tokenize, structlog the rest): contract/lazy.py.
from hermes_cron.contract.lazy import UNUSED, defer

defer(*UNUSED)

import logging  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
import sys  # noqa: E402
from typing import Any, TextIO  # noqa: E402

import structlog  # noqa: E402


class LogSink:
    """The file that log lines go to; reopen() follows a rotated log file (SIGHUP)."""

    def __init__(self, path: str | None = None):
        self.path = path
        self.file: TextIO = self._open() if path else sys.stderr

    def _open(self) -> TextIO:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        # A new log is private whatever the umask; never another kind of file (`--log-file
        # /dev/null` run as root once made /dev/null 0600, and the machine unusable to others).
        if stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_uid == os.geteuid() and st.st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", buffering=1)

    def write(self, text: str) -> int:
        return self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def reopen(self) -> None:
        if self.path:
            old, self.file = self.file, self._open()
            old.close()

    def isatty(self) -> bool:
        return self.file.isatty()


def under_journald(stream: TextIO) -> bool:
    """True when `stream` is connected to journald ($JOURNAL_STREAM names its device:inode)."""
    want = os.environ.get("JOURNAL_STREAM")
    if not want:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def choose_format(fmt: str, sink: LogSink) -> str:
    if fmt != "auto":
        return fmt
    if sink.path:
        return "json"
    if under_journald(sink.file):
        return "keyvalue"
    return "console" if sink.isatty() else "json"


def configure(fmt: str = "auto", path: str | None = None, level: str = "info") -> LogSink:
    """Configure structlog for this process; returns the sink (for reopen on SIGHUP)."""
    sink = LogSink(path)
    fmt = choose_format(fmt, sink)
    processors: list[Any] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level]
    if not (fmt == "keyvalue" and under_journald(sink.file)):
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    if fmt != "json":  # people read these: instants as local time with its offset, not epochs
        processors.append(_readable_instants)
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=sink.isatty()))
    else:
        processors.append(structlog.processors.format_exc_info)
        if fmt == "json":
            processors.append(structlog.processors.JSONRenderer(sort_keys=False))
        else:
            processors.append(structlog.processors.KeyValueRenderer(key_order=["event", "level"], drop_missing=True))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sink),
        cache_logger_on_first_use=False,
    )
    return sink


INSTANT_FIELDS = ("at", "horizon")  # epoch seconds in events; JSON logs keep them as numbers


def _readable_instants(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    for key in INSTANT_FIELDS:
        value = event.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            event[key] = datetime.fromtimestamp(value).astimezone().isoformat(sep=" ", timespec="milliseconds")
    return event


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("hermes_cron").bind(**bound) if bound else structlog.get_logger("hermes_cron")


class Silent:
    """A logger that drops everything: for commands whose output is their answer."""

    def _drop(self, *args: Any, **kw: Any) -> None:
        pass

    debug = info = warning = error = critical = exception = _drop

    def bind(self, **kw: Any) -> "Silent":
        return self
