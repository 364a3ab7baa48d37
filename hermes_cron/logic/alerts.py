"""Notifications, decided: which event a run's end makes for its job, and who is told. Pure code.

A job is `ok` or `failing`; a run that failed, timed out, was interrupted or lost, and a missed
slot, make it failing; a success makes it ok, and the first success after failures is the event
`recovered`. Skipped slots (an overlap policy doing its work) tell nobody anything.

Who is told: `on_failure` (a shell command) for the failing events, `on_success` for `succeeded`
and `recovered`, and every `notify` URL (a JSON POST) for all of them. `notify_on`:
- `always` (the default): every event;
- `change`: only when the job's state changes: the first failure after a success (or the first
  one ever), and `recovered`. A job failing every minute tells once.

Each setting comes from the job, else from the defaults for all jobs (`hermes-cron defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any

from hermes_cron.errors import InvalidInput

NOTIFY_ON = ("always", "change")
HOOK_TIMEOUT = (1.0, 3600.0)
DEFAULT_HOOK_TIMEOUT = 30.0
MAX_HOOK = 16 * 1024  # characters of a hook command
MAX_URLS = 10
KEYS = ("on_failure", "on_success", "notify", "notify_on", "hook_timeout")
FAILING = ("failed", "timed_out", "interrupted", "lost", "missed")
OK, BAD = "ok", "failing"


@dataclass(frozen=True)
class Alerts:
    """A job's hooks and notifications: what runs or is sent when a run ends, and after which ends."""

    on_failure: str | None = None
    on_success: str | None = None
    notify: tuple[str, ...] = ()
    notify_on: str = "always"
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT

    @property
    def any(self) -> bool:
        return bool(self.on_failure or self.on_success or self.notify)

    @classmethod
    def of(cls, own: dict[str, Any], defaults: dict[str, Any]) -> Alerts:
        """The settings in force: the job's own, else the defaults', else the built-in ones."""
        def pick(key: str, empty: Any) -> Any:
            value = own.get(key)
            if value is None or value == empty:
                value = defaults.get(key)
            return value

        notify = pick("notify", ())
        return cls(pick("on_failure", None), pick("on_success", None), tuple(notify or ()),
                   pick("notify_on", None) or "always", float(pick("hook_timeout", None) or DEFAULT_HOOK_TIMEOUT))


def decide(outcome: str, previous: str | None, alerts: Alerts) -> tuple[str | None, str | None, list[tuple[str, str]]]:
    """(the job's state after this run, the event, [(kind, target)] to tell) for a run that ended
    `outcome` when the job was `previous` (None: not known yet)."""
    if outcome == "succeeded":
        state, event = OK, "recovered" if previous == BAD else "succeeded"
    elif outcome in FAILING:
        state, event = BAD, outcome
    else:
        return None, None, []
    if alerts.notify_on == "change" and (state == previous or (previous is None and state == OK)):
        return state, event, []
    targets: list[tuple[str, str]] = []
    command = alerts.on_failure if state == BAD else alerts.on_success
    if command:
        targets.append(("command", command))
    targets += [("webhook", url) for url in alerts.notify]
    return state, event, targets


def check_alerts(values: dict[str, Any], what: str) -> dict[str, Any]:
    """Validate notification settings (a job's, or the defaults); returns them normalised (the
    unset ones left out). InvalidInput names the fault."""
    out: dict[str, Any] = {}
    for key in ("on_failure", "on_success"):
        value = values.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{what}: {key.replace('_', '-')} must be a non-empty shell command")
        if "\0" in value or len(value) > MAX_HOOK:
            raise InvalidInput(f"{what}: {key.replace('_', '-')} has a NUL byte or is longer than {MAX_HOOK} characters")
        out[key] = value
    urls = values.get("notify")
    if urls:
        if isinstance(urls, str) or not isinstance(urls, (list, tuple)) or len(urls) > MAX_URLS:
            raise InvalidInput(f"{what}: notify must be a list of at most {MAX_URLS} URLs")
        out["notify"] = tuple(check_webhook_url(u, f"{what}: notify URL") for u in urls)
    mode = values.get("notify_on")
    if mode is not None:
        if mode not in NOTIFY_ON:
            raise InvalidInput(f"{what}: notify-on {mode!r} is not one of {', '.join(NOTIFY_ON)}")
        out["notify_on"] = mode
    timeout = values.get("hook_timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                not HOOK_TIMEOUT[0] <= float(timeout) <= HOOK_TIMEOUT[1]:
            raise InvalidInput(f"{what}: hook timeout {timeout!r} is out of range: {HOOK_TIMEOUT[0]:g} s to "
                               f"{HOOK_TIMEOUT[1]:g} s")
        out["hook_timeout"] = float(timeout)
    unknown = set(values) - set(KEYS)
    if unknown:
        raise InvalidInput(f"{what}: unknown setting(s) {', '.join(sorted(unknown))}")
    return out


def check_webhook_url(url: Any, what: str) -> str:
    """An http(s) URL with a host, no spaces or control characters, at most 2000 characters (a
    query is allowed: webhook services put their tokens there)."""
    from urllib.parse import urlsplit

    ok = isinstance(url, str)
    if ok:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= 2000 and \
                not any(c.isspace() or ord(c) < 32 for c in url) and not parts.fragment
        except ValueError:
            ok = False
    if not ok:
        raise InvalidInput(f"{what} {str(url)[:80]!r} is not an http(s) URL with a host")
    return url
