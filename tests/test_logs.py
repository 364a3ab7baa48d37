"""The log setup: the modules structlog and the standard library import for what we never use
(asyncio, uuid, inspect, tokenize: contract/lazy.py) are deferred, so a daemon doesn't carry
their memory; anything that does use one still gets the real one."""

from __future__ import annotations

import ast
import json
import os
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


INSPECT_PROGRAM = r"""
import json, sys
from hermes_cron.contract.logs import configure, get_logger
import hermes_cron.engine.daemon  # every dataclass of the daemon is made without inspect
configure("json", None, "info")
deferred = sorted(n for n in ("inspect", "ast", "dis", "tokenize") if type(sys.modules.get(n)).__name__ != "module")
try:
    raise ValueError("boom")
except ValueError:
    get_logger().error("failed", exc_info=True)  # a traceback with its source line: tokenize, loaded now
from dataclasses import dataclass
@dataclass
class Point:
    x: int
    y: int = 2
import inspect
print(json.dumps({"deferred": deferred, "doc": Point.__doc__, "sig": str(inspect.signature(Point)),
                  "real": inspect.getmodule(Point).__name__, "tokenize": type(sys.modules["tokenize"]).__name__}))
"""


def test_inspect_and_tokenize_are_loaded_only_when_used(tmp_path):
    program = tmp_path / "program.py"  # a file: a traceback shows its lines
    program.write_text(INSPECT_PROGRAM)
    r = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    event = json.loads(r.stderr.strip().splitlines()[-1])
    assert event["event"] == "failed" and 'raise ValueError("boom")' in event["exception"], event
    seen = json.loads(r.stdout)
    assert seen == {"deferred": ["ast", "dis", "inspect", "tokenize"], "doc": "Point(x: int, y: int = 2)",
                    "sig": "(x: int, y: int = 2) -> None", "real": "__main__", "tokenize": "module"}, r.stdout


def _dataclasses_without_docstring(root: str) -> list[str]:
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            for node in ast.walk(ast.parse(open(path).read(), path)):
                if isinstance(node, ast.ClassDef) and ast.get_docstring(node) is None and any(
                        "dataclass" in ast.unparse(d) for d in node.decorator_list):
                    found.append(f"{os.path.relpath(path, root)}:{node.lineno} {node.name}")
    return found


def test_every_dataclass_has_a_docstring():
    """dataclasses makes a docstring from the signature for a class without one, and loads inspect
    (1 MB of the daemon's memory) to do it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    missing = [found for pkg in ("hermes_cron", "watchdog")
               for found in _dataclasses_without_docstring(os.path.join(root, pkg))]
    assert missing == [], "give these a docstring: " + ", ".join(missing)


def test_the_docstring_check_finds_a_dataclass_without_one(tmp_path):
    (tmp_path / "m.py").write_text("from dataclasses import dataclass\n\n\n@dataclass(frozen=True)\nclass A:\n"
                                   "    x: int\n\n\n@dataclass\nclass B:\n    \"\"\"Documented.\"\"\"\n\n    y: int\n")
    assert _dataclasses_without_docstring(str(tmp_path)) == ["m.py:5 A"]


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
