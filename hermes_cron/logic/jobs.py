"""The job: a typed, validated record of what to run, when, and how. Pure code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any

from hermes_cron.logic.alerts import KEYS as ALERT_KEYS, check_alerts
from hermes_cron.logic.durations import JITTER, KILL_GRACE, MISFIRE_GRACE, TIMEOUT, check_duration
from hermes_cron.errors import InvalidInput
from hermes_cron.logic.names import check_name
from hermes_cron.logic.schedule import Schedule, jittered, parse_schedule
from hermes_cron.logic.zones_lite import utc_iso

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OVERLAP_POLICIES = ("skip", "allow", "replace")
ON_LOST = ("record", "rerun")
MAX_RETRIES = 100
RETRY_DELAY = (0.1, 86400.0)  # shared store: a run whose host died is recorded lost, or run again once
DEFAULT_OUTPUT_CAP = 1024 * 1024
DEFAULT_MISFIRE_GRACE = 600.0
DEFAULT_KILL_GRACE = 10.0
DEFAULT_KEEP_RUNS = 50
KEEP_RUNS = (1, 1_000_000)
OUTPUT_CAP = (1024, 1 << 30)  # 1 KiB to 1 GiB
INSTANTS = (0.0, 32503680000.0)  # stored instants: 1970 to the year 3000
MAX_COMMAND = 256 * 1024  # characters of a command, all words together


@dataclass(frozen=True)
class Job:
    """A job's definition as its file holds it, checked: what to run, when, and how."""

    name: str
    command: tuple[str, ...]
    schedule: str
    tz: str
    shell: bool = False
    enabled: bool = True
    timeout: float | None = None
    overlap: str = "skip"
    misfire_grace: float = DEFAULT_MISFIRE_GRACE
    kill_grace: float = DEFAULT_KILL_GRACE
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    output_cap: int = DEFAULT_OUTPUT_CAP
    keep_runs: int = DEFAULT_KEEP_RUNS
    on_lost: str = "record"
    jitter: float = 0.0  # each slot later by a stable per-job offset below this (logic/schedule.py)
    ping: str | None = None  # a dead-man's-switch URL (Healthchecks.io conventions): /start, success, /<code>
    retries: int = 0  # further attempts of a scheduled slot whose run failed or timed out
    retry_delay: float = 10.0  # before the first retry; doubled for each next one
    retry_max_delay: float = 600.0
    on_failure: str | None = None  # notifications (logic/alerts.py): a shell command told of each failure,
    on_success: str | None = None  # ... one told of each success,
    notify: tuple[str, ...] = ()  # ... webhook URLs (JSON POST) told of both,
    notify_on: str | None = None  # ... "always" or "change" (None: the defaults')
    hook_timeout: float | None = None
    anchor: float = 0.0  # interval schedules count their slots from here
    created: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        if not self.command or not all(isinstance(a, str) and a for a in self.command):
            raise InvalidInput(f"job {self.name!r}: the command is empty")
        if any("\0" in a for a in self.command):
            raise InvalidInput(f"job {self.name!r}: the command contains a NUL byte")
        if self.shell and len(self.command) != 1:
            raise InvalidInput(f"job {self.name!r}: a --shell command is one string")
        if self.overlap not in OVERLAP_POLICIES:
            raise InvalidInput(
                f"job {self.name!r}: overlap policy {self.overlap!r} is not one of {', '.join(OVERLAP_POLICIES)}"
            )
        if self.ping is not None:
            check_ping_url(self.ping, f"job {self.name!r}: ping URL")
        if not isinstance(self.retries, int) or not 0 <= self.retries <= MAX_RETRIES:
            raise InvalidInput(f"job {self.name!r}: retries {self.retries!r} is out of range: 0 to {MAX_RETRIES}")
        check_duration(self.retry_delay, f"job {self.name!r}: retry delay", RETRY_DELAY)
        check_duration(self.retry_max_delay, f"job {self.name!r}: retry max delay", RETRY_DELAY)
        check_alerts({k: getattr(self, k) for k in ALERT_KEYS}, f"job {self.name!r}")
        if self.on_lost not in ON_LOST:
            raise InvalidInput(f"job {self.name!r}: on-lost {self.on_lost!r} is not one of {', '.join(ON_LOST)}")
        if self.timeout is not None:
            check_duration(self.timeout, f"job {self.name!r}: timeout", TIMEOUT)
        check_duration(self.misfire_grace, f"job {self.name!r}: misfire grace", MISFIRE_GRACE)
        check_duration(self.kill_grace, f"job {self.name!r}: kill grace", KILL_GRACE)
        check_duration(self.jitter, f"job {self.name!r}: jitter", JITTER)
        for what, value in (("anchor", self.anchor), ("created", self.created)):
            if not INSTANTS[0] <= value <= INSTANTS[1]:
                raise InvalidInput(f"job {self.name!r}: {what} {value!r} is not a time between 1970 and 3000")
        if sum(len(a) for a in self.command) > MAX_COMMAND:
            raise InvalidInput(f"job {self.name!r}: the command is longer than {MAX_COMMAND} characters")
        if self.cwd is not None and not self.cwd.startswith("/"):
            raise InvalidInput(f"job {self.name!r}: working directory {self.cwd!r} must be an absolute path")
        for key, value in self.env:
            if not ENV_KEY_RE.fullmatch(key) or "\0" in value:
                raise InvalidInput(f"job {self.name!r}: {key!r}={value!r} is not a valid environment variable")
        if not isinstance(self.output_cap, int) or not OUTPUT_CAP[0] <= self.output_cap <= OUTPUT_CAP[1]:
            raise InvalidInput(f"job {self.name!r}: output cap {self.output_cap!r} is out of range: "
                               f"{OUTPUT_CAP[0]} bytes (1K) to {OUTPUT_CAP[1]} bytes (1G)")
        if not isinstance(self.keep_runs, int) or not KEEP_RUNS[0] <= self.keep_runs <= KEEP_RUNS[1]:
            raise InvalidInput(f"job {self.name!r}: keep-runs {self.keep_runs!r} is out of range: "
                               f"{KEEP_RUNS[0]} to {KEEP_RUNS[1]}")
        try:
            self.compiled  # noqa: B018  (validates schedule and zone now, not at the first tick)
        except InvalidInput as e:
            raise InvalidInput(f"job {self.name!r}: {e}") from None

    @cached_property
    def compiled(self) -> Schedule:
        return jittered(parse_schedule(self.schedule, self.tz, hash_key=self.name, anchor=self.anchor), self.name,
                        self.jitter)

    @cached_property
    def spec_json(self) -> str:
        """The job as stored, frozen into each run it claims (what runs is what was claimed)."""
        import json

        return json.dumps(self.to_dict())

    @property
    def kind(self) -> str:
        return self.compiled.kind

    @cached_property
    def fingerprint(self) -> str:
        """What decides the job's fire times: when it changes, the next run is recomputed."""
        return f"{self.schedule}\0{self.tz}\0{self.anchor!r}" + (f"\0{self.jitter!r}" if self.jitter else "")

    def alerts(self, defaults: dict[str, Any]) -> Any:
        """The notification settings in force for this job (logic/alerts.py)."""
        from hermes_cron.logic.alerts import Alerts

        return Alerts.of({k: getattr(self, k) for k in ALERT_KEYS}, defaults)

    @property
    def hermes(self) -> dict[str, Any] | None:
        """{"id", "name"} for one of the Hermes agent's own jobs (logic/hermes.py), else None."""
        found = self.extra.get("hermes")
        return found if isinstance(found, dict) else None

    @property
    def argv(self) -> list[str]:
        return ["/bin/sh", "-c", self.command[0]] if self.shell else list(self.command)

    def command_text(self) -> str:
        import shlex

        return self.command[0] if self.shell else shlex.join(self.command)

    def evolve(self, **changes: Any) -> Job:
        """A copy with `changes`, validated like a new job."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _STORED_FIELDS}
        d["command"] = list(self.command)
        d["env"] = dict(self.env)
        for key in ALERT_KEYS:  # written only when set
            if d[key] in (None, ()):
                del d[key]
        if "notify" in d:
            d["notify"] = list(self.notify)
        d["anchor"] = utc_iso(self.anchor)
        d["created"] = utc_iso(self.created)
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Build a job from its stored form; raise InvalidInput on anything malformed."""
        if not isinstance(data, dict):
            raise InvalidInput("a job entry is not an object")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        missing = {"name", "command", "schedule", "tz"} - data.keys()
        if missing:
            raise InvalidInput(f"job {data.get('name', '?')!r} lacks {', '.join(sorted(missing))}")
        kw = {k: v for k, v in data.items() if k in known}
        try:
            command = kw["command"]
            if isinstance(command, str) or not isinstance(command, list):
                raise TypeError("command must be a list of strings")
            kw["command"] = tuple(command)
            env = kw.get("env", {})
            if not isinstance(env, dict):
                raise TypeError("env must be an object")
            kw["env"] = tuple(sorted((str(k), str(v)) for k, v in env.items()))
            if kw.get("notify") is not None:
                if isinstance(kw["notify"], str) or not isinstance(kw["notify"], list):
                    raise TypeError("notify must be a list of URLs")
                kw["notify"] = tuple(kw["notify"])
            else:
                kw.pop("notify", None)
            for key in ("anchor", "created"):
                if key in kw:
                    kw[key] = parse_utc(kw[key])
            for key in ("timeout", "misfire_grace", "kill_grace", "jitter", "retry_delay", "retry_max_delay",
                        "hook_timeout"):
                if kw.get(key) is not None:
                    if isinstance(kw[key], bool) or not isinstance(kw[key], (int, float)):
                        raise TypeError(f"{key} must be a number of seconds")
                    kw[key] = float(kw[key])
            for key in ("shell", "enabled"):
                if key in kw and not isinstance(kw[key], bool):
                    raise TypeError(f"{key} must be true or false")
            for key in ("output_cap", "keep_runs", "retries"):
                if key in kw and (isinstance(kw[key], bool) or not isinstance(kw[key], int)):
                    raise TypeError(f"{key} must be a whole number")
            for key in ("name", "schedule", "tz", "overlap", "cwd", "on_lost", "ping", "on_failure", "on_success",
                        "notify_on"):
                if key in kw and kw[key] is not None and not isinstance(kw[key], str):
                    raise TypeError(f"{key} must be a string")
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidInput(f"job {data.get('name', '?')!r}: {e}") from None
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**kw, extra=extra)


_STORED_FIELDS = tuple(f for f in Job.__dataclass_fields__ if f != "extra")


def check_ping_url(url: str, what: str) -> str:
    """An http(s) URL with a host, no spaces or control characters, at most 2000 characters."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= 2000 and \
            not any(c.isspace() or ord(c) < 32 for c in url) and not parts.query and not parts.fragment
    except ValueError:
        ok = False
    if not ok:
        raise InvalidInput(f"{what} {url[:80]!r} is not an http(s) URL with a host (no query: the run id is added)")
    return url.rstrip("/")


def parse_utc(value: Any) -> float:
    """A stored instant (ISO 8601 with offset, or a number) as a timestamp."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
