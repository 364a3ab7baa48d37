"""The job definitions: `$HERMES_HOME/cron/hermes-cron-jobs.json`, readable and editable by people.

Writes are atomic and happen under the store lock with a bounded wait. A file that is
corrupted, unreadable or writable by others is never overwritten: every command fails with
a message naming the file and the fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from hermes_cron.errors import InvalidInput, JobNotFound, StoreError
from hermes_cron.contract.files import MISSING, Signature, atomic_write, read_private, signature
from hermes_cron.logic.jobs import Job
from hermes_cron.contract.locks import FileLock
from hermes_cron.contract.paths import Home

SCHEMA_VERSION = 1
STORE_LOCK_TIMEOUT = 10.0

T = TypeVar("T")


@dataclass(frozen=True)
class Invalid:
    """An entry of hermes-cron-jobs.json that is not a valid job: kept exactly as it is, never scheduled, and
    shown with the reason, until someone fixes it by hand or removes it."""

    name: str
    reason: str
    entry: object  # the entry as it was read, written back unchanged

    def to_dict(self) -> dict:
        return {"name": self.name, "state": "invalid", "reason": self.reason, "entry": self.entry}


@dataclass(frozen=True)
class Definitions:
    """The job files as last read: the valid jobs, the invalid ones and why, and the defaults."""

    jobs: dict[str, Job]
    sig: Signature
    invalid: dict[str, Invalid] = field(default_factory=dict)
    defaults_raw: dict = field(default_factory=dict)  # the defaults for all jobs, as stored

    @property
    def defaults(self) -> dict:
        """The defaults for all jobs (logic/alerts.py's settings); invalid ones are not used
        (`hermes-cron defaults` and `status` say why)."""
        return read_defaults(self.defaults_raw)[0]

    @property
    def defaults_error(self) -> str | None:
        return read_defaults(self.defaults_raw)[1]

    def get(self, name: str) -> Job:
        from hermes_cron.errors import JobNotFound

        try:
            return self.jobs[name]
        except KeyError:
            if name in self.invalid:
                raise InvalidInput(f"job {name!r} is invalid ({self.invalid[name].reason}); fix it in "
                                   f"hermes-cron-jobs.json by hand, or remove it with: hermes-cron remove {name}"
                                   ) from None
            raise JobNotFound(f"no job named {name!r}") from None


def read_defaults(raw: object) -> tuple[dict, str | None]:
    """The stored defaults, checked: (the settings, None), or ({}, why they are not used)."""
    from hermes_cron.logic.alerts import check_alerts

    if not raw:
        return {}, None
    if not isinstance(raw, dict):
        return {}, "the defaults are not an object"
    try:
        return check_alerts(raw, "defaults"), None
    except InvalidInput as e:
        return {}, str(e)


def parse(data: bytes, path: str) -> tuple[dict[str, Job], dict[str, Invalid]]:
    jobs, invalid, _ = parse_all(data, path)
    return jobs, invalid


def parse_all(data: bytes, path: str) -> tuple[dict[str, Job], dict[str, Invalid], object]:
    """Parse the bytes of hermes-cron-jobs.json into its valid jobs and its invalid entries. A file that is
    not a job store at all raises StoreError naming the file and the fault; one bad entry makes
    only that entry invalid."""
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
    except RecursionError:
        raise StoreError(f"{path} is nested too deeply to be a job store; it is left as it is") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise StoreError(f"{path} is not a hermes-cron job store (no \"jobs\" list); it is left as it is")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreError(f"{path} has no valid schema version; it is left as it is")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer hermes-cron (schema {version}; this one reads "
            f"{SCHEMA_VERSION}); it is left as it is"
        )
    return (*read_entries(doc["jobs"]), doc.get("defaults") or {})


def read_entries(entries: list) -> tuple[dict[str, Job], dict[str, Invalid]]:
    """Job entries (as stored) into the valid jobs and the invalid entries, with why."""
    jobs: dict[str, Job] = {}
    invalid: dict[str, Invalid] = {}
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        key = name if isinstance(name, str) and name else f"#{index + 1}"
        if key in jobs or key in invalid:
            invalid[f"{key}#{index + 1}"] = Invalid(f"{key}#{index + 1}", f"a second job named {key!r}", entry)
            continue
        try:
            job = Job.from_dict(entry)
        except InvalidInput as e:
            invalid[key] = Invalid(key, _reason(str(e), key), entry)
            continue
        except (ValueError, OverflowError, TypeError, RecursionError) as e:
            invalid[key] = Invalid(key, f"can't be read: {e}", entry)
            continue
        jobs[job.name] = job
    return jobs, invalid


def _reason(message: str, name: str) -> str:
    prefix = f"job {name!r}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def load(home: Home) -> Definitions:
    """Read hermes-cron-jobs.json (a missing file is an empty store)."""
    path = home.jobs
    for _ in range(3):  # a writer may replace the file between our stat and our read
        before = signature(path)
        data = read_private(path)
        if data is None:
            return Definitions({}, MISSING)
        if signature(path) == before:
            return Definitions(*_parsed(data, path, before))
    after = signature(path)
    return Definitions(*_parsed(data, path, after))


def _parsed(data: bytes, path: str, sig: Signature) -> tuple[dict[str, Job], Signature, dict[str, Invalid], dict]:
    jobs, invalid, raw = parse_all(data, path)
    return jobs, sig, invalid, raw


def dump(jobs: dict[str, Job], invalid: dict[str, Invalid] | None = None, defaults: object = None) -> bytes:
    """The bytes of hermes-cron-jobs.json: the valid jobs, every invalid entry exactly as it was
    read, and the defaults for all jobs (kept as they are)."""
    entries = [(n, jobs[n].to_dict()) for n in jobs] + [(k, v.entry) for k, v in (invalid or {}).items()]
    entries.sort(key=lambda item: item[0])
    doc: dict = {"version": SCHEMA_VERSION}
    if defaults:
        doc["defaults"] = defaults
    doc["jobs"] = [entry for _, entry in entries]
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def store_lock(home: Home) -> FileLock:
    return FileLock(home.jobs_lock, "the job store lock")


def mutate(
    home: Home,
    change: Callable[[dict[str, Job]], T],
    after: Callable[[Definitions], None] | None = None,
    timeout: float = STORE_LOCK_TIMEOUT,
    forget: str | None = None,
) -> T:
    """Read-modify-write hermes-cron-jobs.json under the store lock.

    `change` edits the dict of jobs in place (raising to abort, which writes nothing) and
    returns a result. `after` runs with the saved definitions while the lock is still held.
    Invalid entries are written back as they were, except `forget`, the name of one to drop.
    """
    home.ensure()
    with store_lock(home).acquire(timeout):
        current = load(home)
        jobs = dict(current.jobs)
        invalid = {k: v for k, v in current.invalid.items() if k != forget}
        if forget is not None and forget not in current.invalid and forget not in jobs:
            raise JobNotFound(f"no job named {forget!r}")
        result = change(jobs)
        atomic_write(home.jobs, dump(jobs, invalid, current.defaults_raw))
        saved = Definitions(jobs, signature(home.jobs), invalid, current.defaults_raw)
        if after is not None:
            after(saved)
    return result


def set_defaults(home: Home, change: Callable[[dict], dict], timeout: float = STORE_LOCK_TIMEOUT) -> dict:
    """Read-modify-write the defaults for all jobs under the store lock; returns them as saved."""
    home.ensure()
    with store_lock(home).acquire(timeout):
        current = load(home)
        new = change(dict(current.defaults_raw) if isinstance(current.defaults_raw, dict) else {})
        atomic_write(home.jobs, dump(current.jobs, current.invalid, new))
    return new
