"""Job names: what is allowed, so a name can never steer a path outside its folder."""

from __future__ import annotations

import re

from hermes_cron.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_name(name: str) -> str:
    """Refuse names that are empty, too long, or could steer a path (`/`, `..`, leading `.`)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name or name.startswith("."):
        raise InvalidInput(
            f"job name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "not starting with '.' and without '..'"
        )
    return name
