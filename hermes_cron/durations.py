"""Durations as people type them: `30s`, `5m`, `2h`, `1d`, `1h30m`, or plain seconds."""

from __future__ import annotations

import re

from .errors import InvalidInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str, what: str = "duration") -> float:
    """Return the number of seconds in `text`; raise InvalidInput naming `what` if malformed."""
    raw = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return float(raw)
    if not raw or not _WHOLE.fullmatch(raw):
        raise InvalidInput(
            f"{what}: {text!r} is not a duration (use e.g. 30s, 5m, 2h, 1d, 1h30m or plain seconds)"
        )
    return float(sum(float(n) * _UNITS[u] for n, u in _PART.findall(raw)))


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
