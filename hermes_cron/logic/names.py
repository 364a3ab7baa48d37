"""Job names: what is allowed, so a name can never steer a path outside its folder."""

from __future__ import annotations

from hermes_cron.errors import InvalidInput

# [A-Za-z0-9._-]{1,64}, without re: `status` checks names, and re costs its start ~5 ms
NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
NAME_MAX = 64


def check_name(name: str) -> str:
    """Refuse names that are empty, too long, or could steer a path (`/`, `..`, leading `.`)."""
    if not isinstance(name, str) or not 0 < len(name) <= NAME_MAX or not NAME_CHARS.issuperset(name) \
            or ".." in name or name.startswith("."):
        raise InvalidInput(
            f"job name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "not starting with '.' and without '..'"
        )
    return name
