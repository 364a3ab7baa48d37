"""The one-minute fault-injection run (scripts/chaos.py): kills, freezes, edits and competing
tickers, then the invariants. The closing notes quote the ten-minute run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_chaos_for_a_minute_breaks_no_invariant():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "chaos.py"), "--minutes", "1"],
                          capture_output=True, text=True, timeout=600)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "| violations | 0 |" in proc.stdout
    assert "| kill -9 | 0 |" not in proc.stdout, "the run must actually have killed daemons"
