"""Moving a job store written by hermes-cron 0.1 to hermes-cron's own name, once.

hermes-cron 0.1 kept its jobs in `cron/jobs.json` and locked them with `cron/.jobs.lock`: the
Hermes agent's own names in the same folder, so each could destroy the other's jobs. A store of
ours found there (our schema: a "version" number and a "jobs" list; Hermes's file has no version)
is renamed to `cron/hermes-cron-jobs.json`, atomically (one rename(2) in the folder, so the inode,
and with it the schedule state's record of the file, stays the same), under our store lock, and
only when the new name doesn't exist yet. A Hermes `jobs.json` is never touched, nor one we can't
read as ours (it is left for its owner, and reported by `status`).
"""

from __future__ import annotations

import os

from hermes_cron.contract.files import open_dir, read_private
from hermes_cron.contract.paths import JOBS_FILE, LEGACY_JOBS_FILE, Home
from hermes_cron.errors import HermesCronError, file_system_error
from hermes_cron.logic.jsondata import json_object

MIGRATE_LOCK_TIMEOUT = 10.0


def ours(data: bytes | None) -> bool:
    """Whether bytes read from cron/jobs.json are a hermes-cron job store (not the Hermes agent's)."""
    doc = json_object(data)
    if doc is None or not isinstance(doc.get("jobs"), list):
        return False
    version = doc.get("version")
    return isinstance(version, int) and not isinstance(version, bool) and "updated_at" not in doc


def legacy_store_waiting(home: Home) -> bool:
    """Cheap: is there a jobs.json and no store of ours under our own name yet?"""
    return not os.path.lexists(home.jobs) and os.path.lexists(home.legacy_jobs)


def migrate(home: Home, timeout: float = MIGRATE_LOCK_TIMEOUT) -> bool:
    """Move a 0.1 store to our own name; True if this call moved it."""
    if not legacy_store_waiting(home):
        return False
    from hermes_cron.contract.locks import FileLock  # (here: every command checks, hardly any moves)

    with FileLock(home.jobs_lock, "the job store lock").acquire(timeout):
        if not legacy_store_waiting(home):
            return False  # another process moved it (or made a new store) first
        try:
            data = read_private(home.legacy_jobs)
        except HermesCronError:
            return False  # not ours to read (someone else's, open to others): left alone
        if not ours(data):
            return False
        dfd = open_dir(home.cron, 1)
        try:
            os.rename(LEGACY_JOBS_FILE, JOBS_FILE, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
        except OSError as e:
            raise file_system_error(e, f"can't move {home.legacy_jobs} to {home.jobs}") from None
        finally:
            os.close(dfd)
    return True


NOTE = ("moved hermes-cron's job store from cron/jobs.json to cron/hermes-cron-jobs.json: jobs.json is "
        "the Hermes agent's file")
