"""Where hermes-cron keeps its files under HERMES_HOME."""

from __future__ import annotations

import os
from collections import namedtuple

from hermes_cron.errors import file_system_error
from hermes_cron.contract.files import ensure_private_dir
from hermes_cron.logic.names import check_name


def resolve_home(option: str | None = None) -> str:
    """--home, else $HERMES_HOME, else ~/.hermes; always absolute."""
    raw = option or os.environ.get("HERMES_HOME") or os.path.join(os.path.expanduser("~"), ".hermes")
    return os.path.abspath(os.path.expanduser(raw))


STORE_ENV = "HERMES_CRON_STORE"
STORE_SCHEMES = ("postgresql://", "postgres://")


def resolve_store(option: str | None = None) -> str | None:
    """--store, else $HERMES_CRON_STORE, else None (the embedded store in the home's files).
    A URL that carries a password is refused: it would be shown in `ps` and recorded in the
    daemon's pidfile; libpq reads passwords from PGPASSFILE, a service file or PGPASSWORD."""
    raw = option if option is not None else os.environ.get(STORE_ENV) or None
    if raw is None or raw in ("", "local", "sqlite"):
        return None
    from urllib.parse import urlsplit  # (here: 4 ms of `status` when no URL is given)

    from hermes_cron.errors import InvalidInput

    if not raw.startswith(STORE_SCHEMES):
        raise InvalidInput(f"store {raw[:40]!r} is not a postgresql:// URL (or `local` for the files in the home)")
    try:
        parts = urlsplit(raw)
        has_password = parts.password is not None
    except ValueError:
        raise InvalidInput("the store URL can't be parsed") from None
    if has_password or "password=" in (parts.query or ""):
        raise InvalidInput("the store URL carries a password, which would be visible in `ps` and the pidfile; "
                           "give it in PGPASSFILE (~/.pgpass), a service file (?service=NAME) or PGPASSWORD")
    return raw


JOBS_FILE = "hermes-cron-jobs.json"
JOBS_LOCK = ".hermes-cron-jobs.lock"
LEGACY_JOBS_FILE = "jobs.json"


class Home(namedtuple("Home", "root store", defaults=(None,))):
    """A home: its root folder, and `store`, a postgresql:// URL (jobs, schedule and runs
    shared by several hosts) or None for the embedded store in its files. (A named tuple, like
    the contract's records: contract/heartbeat.py says why.)"""

    __slots__ = ()

    @property
    def cron(self) -> str:
        return os.path.join(self.root, "cron")

    def _in(self, name: str) -> str:
        return os.path.join(self.root, "cron", name)

    # Our own names: cron/ is the Hermes agent's cron folder too, and jobs.json and .jobs.lock
    # are its names (a store of ours under them moves here once: store/migrate.py).
    @property
    def jobs(self) -> str:
        return self._in(JOBS_FILE)

    @property
    def jobs_lock(self) -> str:
        return self._in(JOBS_LOCK)

    @property
    def legacy_jobs(self) -> str:
        """Where hermes-cron 0.1 kept its job store: the Hermes agent's jobs.json."""
        return self._in(LEGACY_JOBS_FILE)

    @property
    def hermes_record(self) -> str:
        """Our record of handing the Hermes agent's ticker over (`hermes-cron hermes enable`)."""
        return self._in("hermes-cron-hermes.json")

    @property
    def hermes_here(self) -> bool:
        """Cheap (two lstat): does the Hermes agent keep jobs here, or did we take its ticker over?
        Where neither, nothing of Hermes's is read or even imported."""
        return os.path.lexists(self.legacy_jobs) or os.path.lexists(self.hermes_record)

    @property
    def state(self) -> str:
        return self._in("state.db")

    @property
    def tick_lock(self) -> str:
        return self._in(".tick.lock")

    @property
    def daemon_lock(self) -> str:
        return self._in(".daemon.lock")

    @property
    def heartbeat(self) -> str:
        return self._in(".ticker_heartbeat")

    @property
    def seen(self) -> str:
        """When the daemon last ticked (engine/upkeep.py), written every tick without a flush."""
        return self._in(".daemon_seen")

    @property
    def pidfile(self) -> str:
        return self._in("hermes-cron.pid")

    @property
    def stopped_marker(self) -> str:
        return self._in(".stopped")

    @property
    def runs(self) -> str:
        return self._in("runs")

    def job_runs(self, job: str) -> str:
        return os.path.join(self.runs, check_name(job))

    def run_dir(self, job: str, run_id: int) -> str:
        return os.path.join(self.job_runs(job), f"{int(run_id):010d}")

    def ensure(self) -> None:
        """Create HERMES_HOME/cron and the runs folder, private to this user (folders missing on
        the way to HERMES_HOME are made 0700 too)."""
        if not os.path.isdir(self.root):
            make_missing_dirs(self.root)
        ensure_private_dir(self.runs, ours=2)


def make_missing_dirs(path: str) -> None:
    """Create the missing folders of `path`, each 0700 whatever the umask."""
    missing = []
    head = path
    while head and head != "/" and not os.path.isdir(head):
        missing.append(head)
        head = os.path.dirname(head)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
            os.chmod(folder, 0o700, follow_symlinks=False)
        except FileExistsError:
            pass
        except OSError as e:
            raise file_system_error(e, f"can't create {folder}") from None
