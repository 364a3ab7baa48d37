"""Reading a JSON object from bytes that may be anything (a file of ours someone may have
changed): the object, or None, never an exception. (json.loads's answer, read by json_lite:
`status` reads the heartbeat this way.)"""

from __future__ import annotations

from hermes_cron.logic.json_lite import loads
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any


def json_object(raw: bytes | str | None) -> dict[str, Any] | None:
    try:
        data = loads(raw) if raw is not None else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
