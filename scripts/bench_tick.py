#!/usr/bin/env python3
"""Benchmark the tick: its period beside a long job (against a lock-over-execution baseline),
fire latency, lock hold time against job count, a burst of jobs due in one second, and the
idle daemon's memory and CPU. Prints the figures as a markdown table.

    .venv/bin/python scripts/bench_tick.py            # everything (about 3 minutes)
    .venv/bin/python scripts/bench_tick.py --quick    # smaller samples (about 1 minute)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from benchlib import (Daemon, cli, kill_runs, new_home, read_stamps, stamp_program, start_burst, summary_ms,
                      write_jobs)


def tick_period_with_long_job(seconds: float) -> dict:
    """Our design: tick every 1 s while a 3 s job runs with overlap=allow (so one is always running)."""
    home = new_home()
    try:
        cli(home, "add", "long", "--schedule", "every 1s", "--overlap", "allow", "--", "sleep", "3")
        d = Daemon(home, "--tick-interval", "1", "--log-level", "debug")
        time.sleep(seconds)
        d.stop()
        ticks = [e for e in d.events("tick") if e.get("counted")]
        stamps = [e["at"] for e in ticks]  # when each tick took the lock
        periods = [b - a for a, b in zip(stamps[1:], stamps[2:])]  # skip the start-up tick
        return {"periods": periods}
    finally:
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)


def baseline_period_with_long_job(seconds: float) -> dict:
    """The old design, rebuilt here only: the tick holds its lock while the due jobs run."""
    import fcntl

    home = new_home()
    lock_path = os.path.join(home, "tick.lock")
    periods, last = [], None
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            target = float(int(time.time()) + 1)
            time.sleep(max(0.0, target - time.time()))
            with open(lock_path, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                now = time.time()
                if last is not None:
                    periods.append(now - last)
                last = now
                subprocess.run(["sleep", "3"])  # the due job, run under the lock
        return {"periods": periods}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def fire_latency(firings: int) -> dict:
    home = new_home()
    try:
        stamp = stamp_program(home)
        out = os.path.join(home, "stamps")
        cli(home, "add", "stamp", "--schedule", "* * * * * *", "--", *stamp, out, "x")
        d = Daemon(home, "--tick-interval", "60")
        deadline = time.monotonic() + firings + 5
        while len(read_stamps(out)) < firings + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        d.stop()
        stamps = read_stamps(out)[1:firings + 1]  # the first may race the start-up
        latency = [t - int(t) for t, _ in stamps]
        return summary_ms(latency)
    finally:
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)


def lock_hold(job_counts: list[int]) -> dict:
    """Lock held by one tick at a minute boundary with N hashed-hourly jobs (about N/60 due), by an
    idle tick, and by the first tick after jobs.json changed (a reconcile). The store is opened
    as the daemon opens it: the WAL is checkpointed in the idle time after a tick (engine/daemon.py),
    never by a commit under the lock (SQLite's automatic checkpoint, which a store opened with
    the defaults runs in the commit that grows the WAL past 1,000 pages: at 100,000 jobs, every
    due tick's)."""
    from hermes_cron.contract.paths import Home
    from hermes_cron.contract.procinfo import ProcId, boot_id
    from hermes_cron.store.sqlite import SqliteStore
    from hermes_cron.engine.ticker import Scheduler

    results = {}
    for n in job_counts:
        home = new_home()
        try:
            write_jobs(home, [{"name": f"job-{i:06d}", "command": ("true",), "schedule": "H * * * *"}
                              for i in range(n)])
            h = Home(home)
            state = SqliteStore(h, manual_checkpoints=True)
            sched = Scheduler(h, state, ProcId.me(), boot_id())
            base = (time.time() // 60 + 1) * 60
            sched.claim(base - 30)  # warm: loads jobs.json once, as a running daemon has
            state.idle()
            due_ticks, idle_ticks, due_counts = [], [], []
            for minute in range(5):
                r = sched.claim(base + 60 * minute + 0.001)
                due_ticks.append(r.lock_held)
                due_counts.append(len(r.claims))
                state.idle()  # the daemon's housekeeping after a tick that wrote: the checkpoint
                idle_ticks.append(sched.claim(base + 60 * minute + 30).lock_held)
            _hand_edit(h)  # one job changed in jobs.json by hand: the next tick reconciles it
            reconcile_tick = sched.claim(base + 60 * 5 + 30).lock_held
            state.close()
            results[n] = {"due_median_ms": round(statistics.median(due_ticks) * 1000, 2),
                          "due_max_ms": round(max(due_ticks) * 1000, 2),
                          "due_jobs": round(statistics.mean(due_counts)),
                          "idle_median_ms": round(statistics.median(idle_ticks) * 1000, 2),
                          "reconcile_ms": round(reconcile_tick * 1000, 2)}
        finally:
            shutil.rmtree(home, ignore_errors=True)
    return results


def _hand_edit(home) -> None:
    """Change one job's schedule in jobs.json without reconciling (as an editor would)."""
    from hermes_cron.store import jobstore

    jobstore.mutate(home, lambda jobs: jobs.update(
        {"job-000000": jobs["job-000000"].evolve(schedule="*/7 * * * *")}))


def burst(n: int) -> dict:
    """N one-shot jobs due in the same second: boundary to the last job's start, and the
    daemon's peak RSS meanwhile."""
    home = new_home()
    try:
        d, at, out = start_burst(home, n)
        peak = 0.0
        deadline = time.time() + 60
        while len(read_stamps(out)) < n and time.time() < deadline:
            peak = max(peak, d.rss_mb())
            time.sleep(0.01)
        peak = max(peak, d.rss_mb())
        stamps = read_stamps(out)
        d.stop()
        starts = [t for t, _ in stamps]
        return {"jobs": n, "started": len(starts), "first_ms": round((min(starts) - at) * 1000, 1),
                "last_ms": round((max(starts) - at) * 1000, 1), "peak_rss_mb": round(peak, 1)}
    finally:
        kill_runs(home)
        shutil.rmtree(home, ignore_errors=True)


def idle(seconds: float, python: str | None = None) -> dict:
    """An idle daemon with 5 daily jobs: its RSS, the spare's private memory (none is held while
    no slot is near), CPU, wake-ups and context switches; then the private memory of the spare
    it forks when a slot comes near.
    `python`: that of a regular install (as README installs it; bench.py makes one), since an
    editable install's import hook costs the daemon ~1.4 MB more."""
    home = new_home()
    try:
        hour = time.localtime().tm_hour
        for i in range(5):  # daily, 3 hours away or more
            cli(home, "add", f"daily-{i}", "--schedule", f"0 {(hour + 3 + i) % 24} * * *", "--", "true")
        d = Daemon(home, python=python)
        time.sleep(2)
        cpu0, switch0, t0 = d.cpu_s(), d.wakeups(), time.monotonic()
        sleeps = d.watch_sleeps(seconds)
        cpu1, switch1, t1 = d.cpu_s(), d.wakeups(), time.monotonic()
        rss, spare = d.rss_mb(), d.children_private_mb()
        anon, file = d.rss_mb("RssAnon"), d.rss_mb("RssFile")
        # A slot comes near (within a tick): the daemon forks its spare supervisor, which it
        # holds until that slot. Its private memory then, with the jobs as they were:
        cli(home, "add", "soon", "--schedule", "every 1m", "--", "true")
        os.kill(d.pid, signal.SIGUSR1)
        time.sleep(5)
        held = d.children_private_mb()
        d.stop()
        return {"rss_mb": round(rss, 1), "anon_mb": round(anon, 1), "file_mb": round(file, 1),
                "spare_private_mb": round(spare, 1), "held_spare_mb": round(held, 1),
                "cpu_ms": round((cpu1 - cpu0) * 1000, 2), "switches": switch1 - switch0, "wakeups": sleeps,
                "seconds": round(t1 - t0, 1)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma list of: period, latency, lock, burst, idle")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else {"period", "latency", "lock", "burst", "idle"}
    q = args.quick
    rows = []
    if "period" in only:
        ours = tick_period_with_long_job(8 if q else 20)["periods"]
        base = baseline_period_with_long_job(8 if q else 15)["periods"]
        rows.append(("tick period, 1 s interval, 3 s job running (this design)",
                     f"median {statistics.median(ours):.3f} s, max deviation "
                     f"{max(abs(p - 1) for p in ours) * 1000:.1f} ms ({len(ours)} periods)"))
        rows.append(("tick period, same job, lock held over execution (old design)",
                     f"median {statistics.median(base):.3f} s ({len(base)} periods)"))
    if "latency" in only:
        lat = fire_latency(20 if q else 60)
        rows.append((f"fire latency, scheduled second to job start ({lat['n']} firings)",
                     f"median {lat['median_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms"))
    if "lock" in only:
        for n, r in lock_hold([100, 1000] if q else [100, 1000, 10000]).items():
            rows.append((f"lock held per tick, {n:,} jobs",
                         f"{r['due_median_ms']} ms median, {r['due_max_ms']} ms max with ~{r['due_jobs']} due; "
                         f"idle {r['idle_median_ms']} ms; after a hand edit {r['reconcile_ms']} ms"))
    if "burst" in only:
        for n in ([200] if q else [200, 1000]):
            b = burst(n)
            rows.append((f"{n:,} jobs due in one second: boundary to last start",
                         f"{b['last_ms']} ms (first {b['first_ms']} ms, {b['started']} started), "
                         f"daemon peak RSS {b['peak_rss_mb']} MB"))
    if "idle" in only:
        i = idle(20 if q else 60)
        rows.append((f"idle daemon over {i['seconds']} s (60 s ticks)",
                     f"RSS {i['rss_mb']} MB (anonymous {i['anon_mb']}, files {i['file_mb']}), "
                     f"CPU {i['cpu_ms']} ms ({i['cpu_ms'] * 300 / i['seconds']:.1f} ms per "
                     f"5 minutes), {i['wakeups']} wake-ups, {i['switches']} context switches; "
                     f"spare {i['spare_private_mb']} MB idle, {i['held_spare_mb']} MB when a slot is near"))
    print("\n| measure | result |\n| --- | --- |")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print(f"\n(`{' '.join([os.path.basename(sys.executable), 'scripts/bench_tick.py', *sys.argv[1:]])}`, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
