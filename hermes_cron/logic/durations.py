"""Durations as people type them: `30s`, `5m`, `2h`, `1d`, `1h30m`, or plain seconds.

Every duration a user gives has a range, stated here once (README, "Job options"): a value
outside it is refused where it is given, and a job that holds one is invalid.
"""

from __future__ import annotations

import math

from hermes_cron.errors import InvalidInput

DAY = 86400.0
MAX_DURATION = 366 * DAY  # the longest timeout, grace or interval: a year and a day
MAX_KILL_GRACE = DAY
MAX_TEXT = 64  # characters: no duration needs more

# (least, most) seconds for each duration a job carries
TIMEOUT = (0.1, MAX_DURATION)
MISFIRE_GRACE = (1.0, MAX_DURATION)
KILL_GRACE = (0.0, MAX_KILL_GRACE)
INTERVAL = (1.0, MAX_DURATION)
JITTER = (0.0, MAX_DURATION)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER = r"[0-9]{1,30}(?:\.[0-9]{1,9})?"  # ASCII digits only: int() would take '٣' and '５'
_PART = rf"({_NUMBER})([smhdw])"
_WHOLE = rf"(?:{_NUMBER}[smhdw])+"
_compiled: tuple | None = None  # (number, whole, part), compiled by the first parse


def _patterns() -> tuple:
    """The grammar's patterns, compiled once, on the first parse rather than at import: `status`
    formats durations, never parses one, and re costs its start ~5 ms."""
    global _compiled
    if _compiled is None:
        import re

        _compiled = (re.compile(_NUMBER), re.compile(_WHOLE), re.compile(_PART))
    return _compiled


def parse_duration(text: str, what: str = "duration", bounds: tuple[float, float] | None = None) -> float:
    """The number of seconds in `text`; InvalidInput naming `what` if it is malformed or, with
    `bounds`, outside them."""
    number, whole, part = _patterns()
    raw = text.strip().lower()
    if len(raw) > MAX_TEXT:
        raise InvalidInput(f"{what}: {text[:20]!r}... is too long to be a duration")
    if number.fullmatch(raw):
        seconds = float(raw)
    elif raw and whole.fullmatch(raw):
        seconds = float(sum(float(n) * _UNITS[u] for n, u in part.findall(raw)))
    else:
        raise InvalidInput(
            f"{what}: {text!r} is not a duration (use e.g. 30s, 5m, 2h, 1d, 1h30m or plain seconds)"
        )
    if bounds is not None:
        check_duration(seconds, what, bounds)
    return seconds


def check_duration(seconds: float, what: str, bounds: tuple[float, float]) -> None:
    """InvalidInput unless `seconds` is a finite number within `bounds`."""
    lo, hi = bounds
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds) \
            or not lo <= seconds <= hi:
        shown = f"{seconds:g} s" if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else repr(seconds)
        raise InvalidInput(f"{what} {shown} is out of range: {format_duration(lo)} to {format_duration(hi)}")


def format_duration(seconds: float) -> str:
    """Render seconds compactly: 90 -> '1m30s', 0.25 -> '0.25s'."""
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:.3g}s"
    rest = int(round(seconds))
    if rest == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
