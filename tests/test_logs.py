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


def test_a_log_file_that_is_not_a_regular_file_keeps_its_mode(tmp_path):
    """`--log-file /dev/null` (or a FIFO) is written to, never made private: run as root on
    /dev/null, that took every other user's /dev/null away."""
    import os
    import stat

    from hermes_cron.contract.logs import LogSink

    fifo = tmp_path / "logs.fifo"
    os.mkfifo(fifo, 0o644)
    os.chmod(fifo, 0o644)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = LogSink(str(fifo))
        sink.write("x\n")
        sink.flush()
        assert stat.S_IMODE(os.stat(fifo).st_mode) == 0o644
        assert os.read(reader, 10) == b"x\n"
        sink.file.close()
    finally:
        os.close(reader)
    log = tmp_path / "new.log"
    LogSink(str(log)).file.close()
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600, "a new regular log is still private"
