#!/usr/bin/env python3
"""Recovery time under the watchdog: from SIGSTOP of the daemon to the first heartbeat of the
daemon that replaces it, with a short stale threshold. The goal: within the threshold + 2 s.

    .venv/bin/python scripts/bench_watchdog.py [--stale-after 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from benchlib import cli, new_home


def heartbeat(home: str) -> dict:
    try:
        with open(os.path.join(home, "cron", ".ticker_heartbeat")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def one_round(stale_after: float, check_every: float) -> float:
    home = new_home()
    dog = None
    try:
        cli(home, "start", "--tick-interval", "0.5", "--heartbeat-every", "1")
        dog = subprocess.Popen([sys.executable, "-m", "hermes_cron_watchdog", "--home", home, "--stale-after",
                                str(stale_after), "--check-every", str(check_every), "--log-format", "json",
                                "--log-file", os.path.join(home, "watchdog.log")])
        time.sleep(1.0)
        old = heartbeat(home)["pid"]
        t0 = time.monotonic()
        os.kill(old, signal.SIGSTOP)
        deadline = t0 + stale_after + 30
        while time.monotonic() < deadline:
            if heartbeat(home).get("pid") not in (None, old):
                return time.monotonic() - t0
            time.sleep(0.005)
        raise RuntimeError("no new daemon within 30 s past the threshold")
    finally:
        if dog is not None:
            dog.terminate()
            dog.wait()
        cli(home, "stop", check=False)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stale-after", type=float, default=2.0)
    ap.add_argument("--check-every", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    times = [one_round(args.stale_after, args.check_every) for _ in range(args.rounds)]
    print("\n| measure | result |\n| --- | --- |")
    print(f"| SIGSTOP to the new daemon's first heartbeat, threshold {args.stale_after:g} s, checks every "
          f"{args.check_every:g} s ({args.rounds} rounds) | median {statistics.median(times):.2f} s, max {max(times):.2f} s "
          f"(goal: under {args.stale_after + 2:g} s) |")
    print(f"\n(`python scripts/bench_watchdog.py --stale-after {args.stale_after:g} --rounds {args.rounds}`)")


if __name__ == "__main__":
    main()
