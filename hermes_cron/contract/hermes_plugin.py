"""hermes-cron's cron provider plugin for the Hermes agent.

`hermes-cron hermes enable` copies this file to `$HERMES_HOME/plugins/hermes-cron/__init__.py`
and sets `cron.provider: hermes-cron` in Hermes's config.yaml. It runs inside Hermes's own
Python, so it uses the standard library and Hermes's `CronScheduler` only, never hermes_cron.

- `is_available()` is True only while a healthy hermes-cron daemon serves this home: its pidfile
  names a live process of this boot with the same start time and command line, and its
  heartbeat is fresh and names that process. Cheap (three small files, two reads of /proc) and
  offline, as Hermes asks; when False, Hermes falls back to its built-in ticker.
- `start()` does not tick and returns: hermes-cron's daemon ticks Hermes's jobs and fires each
  through Hermes's own `fire_due` steps (hermes_cron/contract/hermes_fire.py).
- `on_jobs_changed()` and `reconcile()` wake the daemon (SIGUSR1, to the verified pid only) so an
  edit made with `hermes cron ...` is seen at once.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time

PLUGIN_VERSION = "1"
PROVIDER_NAME = "hermes-cron"
STALE_FACTOR = 2.0
DEFAULT_INTERVAL = 300.0

try:  # inside Hermes: its provider interface; elsewhere (our own tests) a plain base
    from cron.scheduler_provider import CronScheduler as _Base
except Exception:  # pragma: no cover - depends on where it is imported
    _Base = object


def _home() -> str:
    try:
        from hermes_constants import get_hermes_home

        return str(get_hermes_home())
    except Exception:
        return os.environ.get("HERMES_HOME") or os.path.join(os.path.expanduser("~"), ".hermes")


def _read(path: str, limit: int = 65536) -> bytes | None:
    """A small private file of this user's: never a symlink, a FIFO, or a file others can write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def _proc_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(65536).decode(errors="replace")
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    raw = _proc_text(f"/proc/{pid}/stat")
    if raw is None or ")" not in raw:
        return None
    try:
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _daemon_argv(argv: list) -> bool:
    if len(argv) >= 3 and argv[1:3] == ["-m", "hermes_cron"]:
        rest = argv[3:]
    elif argv and os.path.basename(argv[0]) == "hermes-cron":
        rest = argv[1:]
    elif len(argv) >= 2 and os.path.basename(argv[1]) == "hermes-cron":
        rest = argv[2:]
    else:
        return False
    while rest and rest[0].startswith(("--home", "--store")):
        rest = rest[2:] if rest[0] in ("--home", "--store") else rest[1:]
    return bool(rest) and rest[0] == "run"


def daemon(home: str) -> tuple[int, int] | None:
    """(pid, start) of the live hermes-cron daemon of `home`, verified, or None."""
    raw = _read(os.path.join(home, "cron", "hermes-cron.pid"))
    if raw is None:
        return None
    lines = raw.decode(errors="replace").splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        return None
    try:
        details = json.loads(lines[1])
    except ValueError:
        return None
    pid, start, argv = int(lines[0]), details.get("pid_start"), details.get("argv")
    if not isinstance(start, int) or not isinstance(argv, list) or not _daemon_argv(argv):
        return None
    boot = (_proc_text("/proc/sys/kernel/random/boot_id") or "").strip()
    if details.get("boot_id") not in (None, boot) or _start_ticks(pid) != start:
        return None
    cmdline = _proc_text(f"/proc/{pid}/cmdline")
    if cmdline is None or cmdline.split("\0")[:-1] != argv:
        return None
    return pid, start


def healthy(home: str, now: float | None = None) -> bool:
    """A verified daemon whose heartbeat names it, is fresh, and whose ticks aren't failing."""
    me = daemon(home)
    if me is None:
        return False
    raw = _read(os.path.join(home, "cron", ".ticker_heartbeat"))
    try:
        hb = json.loads(raw) if raw else None
    except ValueError:
        return False
    if not isinstance(hb, dict) or (hb.get("pid"), hb.get("pid_start")) != me:
        return False
    try:
        interval = float(hb.get("interval_s") or DEFAULT_INTERVAL)
        age = (time.time() if now is None else now) - float(hb["time"])
    except (KeyError, TypeError, ValueError):
        return False
    return age <= STALE_FACTOR * interval and not hb.get("consecutive_failures")


class HermesCronScheduler(_Base):  # type: ignore[misc, valid-type]
    """Hermes's cron provider backed by the hermes-cron daemon of this home."""

    plugin_version = PLUGIN_VERSION

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    def is_available(self) -> bool:
        return healthy(_home())

    def start(self, stop_event, *, adapters=None, loop=None, interval=60, **_kw) -> None:
        return None  # hermes-cron's daemon ticks; nothing to run in Hermes's process

    def stop(self) -> None:
        return None

    def on_jobs_changed(self) -> None:
        me = daemon(_home())
        if me is not None:
            try:
                os.kill(me[0], signal.SIGUSR1)
            except OSError:
                pass

    def reconcile(self) -> None:
        self.on_jobs_changed()


def register(ctx) -> None:
    """Hermes's plugin entry point: register_cron_scheduler(the provider)."""
    ctx.register_cron_scheduler(HermesCronScheduler())
