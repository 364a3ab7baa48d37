#!/usr/bin/env python3
"""Where a burst's time goes: N one-shot jobs due in the same second, and the timeline from the
daemon's claim to each supervisor's last start (read from the daemon's debug log and each run's
job.pid), and the starts' quartiles, all in ms from the slot. With --supervisor, one supervisor
starting N runs in this process under cProfile (its start phase only).

    .venv/bin/python scripts/profile_burst.py 200
    .venv/bin/python scripts/profile_burst.py 32 --supervisor
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import time
from datetime import datetime

from benchlib import kill_runs, new_home, read_stamps, stamp_program, start_burst


def burst(n: int) -> None:
    home = new_home()
    try:
        d, at, out = start_burst(home, n, "--log-level", "debug")
        deadline = time.time() + 60
        while len(read_stamps(out)) < n and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1)
        starts = sorted(t for t, _ in read_stamps(out))
        d.stop()
        rel = lambda t: round((t - at) * 1000, 1)  # noqa: E731
        for e in d.events("tick"):
            if e.get("claimed"):
                logged = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
                print(f"claim: tick at {rel(e['at'])} ms, lock held {e['lock_held_ms']} ms, {e['claimed']} claimed, "
                      f"handed over by {rel(logged)} ms")
        by = collections.defaultdict(list)
        for token in glob.glob(os.path.join(home, "cron", "runs", "*", "*", "start")):
            sup = json.load(open(token))["supervisor_pid"]
            by[sup].append(float(open(os.path.join(os.path.dirname(token), "job.pid")).read().split()[2]))
        for pid, v in sorted(by.items(), key=lambda kv: min(kv[1])):
            print(f"supervisor {pid}: {len(v)} runs, first start {rel(min(v))} ms, last {rel(max(v))} ms")
        q = [rel(starts[max(0, int(len(starts) * p) - 1)]) for p in (0, .25, .5, .75, 1.0)]
        print(f"{len(starts)} of {n} started; starts at 0/25/50/75/100%: {q} ms")
    finally:
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)


def supervisor(n: int) -> None:
    import cProfile
    import pstats

    from hermes_cron.contract.paths import Home
    from hermes_cron.engine.launch import Launch
    from hermes_cron.engine.supervisor import StopFlag, Supervisor
    from hermes_cron.logic.jobs import Job

    home = new_home()
    try:
        h = Home(home)
        h.ensure()
        exe = stamp_program(home)[0]
        out = os.path.join(home, "stamps")
        at = time.time() + 0.3 + n * 0.003  # room to hold each run before the slot (engine/hold.py)
        launches = []
        for i in range(n):
            job = Job(name=f"b{i}", command=(exe, out, str(i)), schedule="every 1h", tz="UTC")
            launches.append(Launch.of(i + 1, job, at, h.run_dir(job.name, i + 1), h.root, (), None, None))
        r, _ = os.pipe()
        sup = Supervisor(launches, StopFlag(), r, None)
        prof = cProfile.Profile()
        start_due = sup._start_due

        def timed() -> None:
            prof.enable()
            t0 = time.perf_counter()
            try:
                start_due()
            finally:
                prof.disable()
                if sup.active and not getattr(timed, "said", False):
                    timed.said = True  # type: ignore[attr-defined]
                    print(f"start phase: {(time.perf_counter() - t0) * 1000:.1f} ms for {len(sup.active)} runs")

        sup._start_due = timed  # type: ignore[method-assign]
        sup.run()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int)
    ap.add_argument("--supervisor", action="store_true")
    args = ap.parse_args()
    (supervisor if args.supervisor else burst)(args.n)


if __name__ == "__main__":
    main()
