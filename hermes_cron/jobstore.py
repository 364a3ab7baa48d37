"""The job definitions: `$HERMES_HOME/cron/jobs.json`, readable and editable by people.

Writes are atomic and happen under the store lock with a bounded wait. A file that is
corrupted, unreadable or writable by others is never overwritten: every command fails with
a message naming the file and the fault.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, TypeVar

from .errors import InvalidInput, StoreError
from .fsutil import atomic_write, read_private
from .jobs import Job
from .locks import FileLock
from .paths import Home

SCHEMA_VERSION = 1
STORE_LOCK_TIMEOUT = 10.0

T = TypeVar("T")


@dataclass(frozen=True)
class Signature:
    """Identifies one version of jobs.json on disk; any write (atomic or by hand) changes it."""

    ino: int
    mtime_ns: int
    size: int

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


@dataclass(frozen=True)
class Definitions:
    jobs: dict[str, Job]
    sig: Signature

    def get(self, name: str) -> Job:
        from .errors import JobNotFound

        try:
            return self.jobs[name]
        except KeyError:
            raise JobNotFound(f"no job named {name!r}") from None


def parse(data: bytes, path: str) -> dict[str, Job]:
    """Parse the bytes of jobs.json; StoreError naming the file and the fault."""
    try:
        doc = json.loads(data)
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not UTF-8 text; it is left as it is") from None
    except json.JSONDecodeError as e:
        cut = e.pos >= len(data.rstrip()) or e.msg.startswith("Unterminated")
        why = "is truncated" if cut else "is not valid JSON"
        raise StoreError(
            f"{path} {why} (line {e.lineno} column {e.colno}: {e.msg}); it is left as it is"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise StoreError(f"{path} is not a hermes-cron job store (no \"jobs\" list); it is left as it is")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise StoreError(f"{path} has no valid schema version; it is left as it is")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer hermes-cron (schema {version}; this one reads "
            f"{SCHEMA_VERSION}); it is left as it is"
        )
    jobs: dict[str, Job] = {}
    for entry in doc["jobs"]:
        try:
            job = Job.from_dict(entry)
        except InvalidInput as e:
            raise StoreError(f"{path}: {e}; the file is left as it is") from None
        if job.name in jobs:
            raise StoreError(f"{path}: job {job.name!r} appears twice; the file is left as it is")
        jobs[job.name] = job
    return jobs


def load(home: Home) -> Definitions:
    """Read jobs.json (a missing file is an empty store)."""
    path = home.jobs
    for _ in range(3):  # a writer may replace the file between our stat and our read
        before = signature(path)
        data = read_private(path)
        if data is None:
            return Definitions({}, MISSING)
        if signature(path) == before:
            return Definitions(parse(data, path), before)
    return Definitions(parse(data, path), signature(path))


def dump(jobs: dict[str, Job]) -> bytes:
    doc = {"version": SCHEMA_VERSION, "jobs": [jobs[n].to_dict() for n in sorted(jobs)]}
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def store_lock(home: Home) -> FileLock:
    return FileLock(home.jobs_lock, "the job store lock")


def mutate(
    home: Home,
    change: Callable[[dict[str, Job]], T],
    after: Callable[[Definitions], None] | None = None,
    timeout: float = STORE_LOCK_TIMEOUT,
) -> T:
    """Read-modify-write jobs.json under the store lock.

    `change` edits the dict of jobs in place (raising to abort, which writes nothing) and
    returns a result. `after` runs with the saved definitions while the lock is still held.
    """
    home.ensure()
    with store_lock(home).acquire(timeout):
        current = load(home)
        jobs = dict(current.jobs)
        result = change(jobs)
        atomic_write(home.jobs, dump(jobs))
        saved = Definitions(jobs, signature(home.jobs))
        if after is not None:
            after(saved)
    return result
