"""The one-minute cluster run (scripts/chaos.py --store auto): three nodes on a PostgreSQL
server of its own, under kill -9, SIGSTOP past the lease, PostgreSQL restarts and edits from
every host, then the invariants. The closing notes quote the ten-minute run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cluster_chaos_for_a_minute_breaks_no_invariant():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "chaos.py"), "--store", "auto", "--minutes",
                           "1"], capture_output=True, text=True, timeout=600)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert "0 violation(s)" in proc.stdout
    assert "kill -9" in proc.stdout or "SIGSTOP" in proc.stdout, "the run must actually have injected faults"
