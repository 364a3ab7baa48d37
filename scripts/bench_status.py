#!/usr/bin/env python3
"""Cold start of `hermes-cron status` (and a few other commands), as a user runs them: the
console script of a regular (not editable) install, a daemon running, each command started
afresh. Prints median and p90 wall times.

    .venv/bin/python scripts/bench_status.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, percentile


def install(venv: str) -> str:
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", ROOT], check=True)
    return os.path.join(venv, "bin", "hermes-cron")


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
    return out


def measure(runs: int) -> list[tuple[str, list[float]]]:
    """Wall times of each command, `runs` times, in a fresh regular install with a daemon up."""
    work = tempfile.mkdtemp(prefix="hermes-bench-status-")
    try:
        exe = install(os.path.join(work, "venv"))
        env = {**os.environ, "HERMES_HOME": os.path.join(work, "home")}
        subprocess.run([exe, "add", "a", "--schedule", "@daily", "--", "true"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([exe, "start"], env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            python = timed([os.path.join(work, "venv", "bin", "python"), "-c", "pass"], env, runs)
            rows = [("python -c pass (the floor)", python)]
            for cmd in (["status"], ["status", "--json"], ["list"], ["--version"]):
                rows.append((f"hermes-cron {' '.join(cmd)}", timed([exe, *cmd], env, runs)))
        finally:
            subprocess.run([exe, "stop"], env=env, stdout=subprocess.DEVNULL)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    rows = measure(args.runs)
    print("\n| command | median | p90 |\n| --- | --- | --- |")
    for name, values in rows:
        print(f"| {name} | {statistics.median(values) * 1000:.1f} ms | {percentile(values, 0.9) * 1000:.1f} ms |")
    print(f"\n(`python scripts/bench_status.py --runs {args.runs}`, regular install, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
