"""The log setup: structlog's import of asyncio (for async loggers we never use) is deferred, so a
daemon doesn't carry asyncio's memory; anything that does use asyncio still gets the real one."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = r"""
import json, sys
from hermes_cron.contract.logs import configure, get_logger
configure("json", None, "info")
get_logger().info("hello", n=1)
loaded = "asyncio.base_events" in sys.modules
import asyncio
async def answer():
    await asyncio.sleep(0)
    return 42
print(json.dumps({"loaded_before_use": loaded, "answer": asyncio.run(answer()),
                  "real": asyncio.AbstractEventLoop.__module__}), file=sys.stdout)
"""


def test_asyncio_is_loaded_only_when_used():
    r = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    event = json.loads(r.stderr.strip().splitlines()[-1])
    assert event["event"] == "hello" and event["n"] == 1 and event["level"] == "info"
    seen = json.loads(r.stdout)
    assert seen == {"loaded_before_use": False, "answer": 42, "real": "asyncio.events"}
