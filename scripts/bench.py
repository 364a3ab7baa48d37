#!/usr/bin/env python3
"""One report against the brief's goals: fire latency, tick period beside a long job (against
the lock-over-execution baseline), lock time against job count, bursts, idle memory and CPU,
`status` cold start, and recovery under the watchdog. With --peers, Debian's cron and
APScheduler 3 are measured in the same run, by the same method (a job that stamps its own
start), on fire latency, idle RSS and a 200-job burst. Prints a markdown table.

    .venv/bin/python scripts/bench.py              # hermes-cron alone (about 6 minutes)
    .venv/bin/python scripts/bench.py --peers      # with cron and APScheduler (about 12 minutes, root)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import bench_peers
import bench_status
import bench_tick
import bench_watchdog
from benchlib import percentile


def ms(x: float) -> str:
    return f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", action="store_true", help="also measure Debian cron and APScheduler 3")
    ap.add_argument("--firings", type=int, default=60, help="fire-latency samples (one a second)")
    ap.add_argument("--big", action="store_true", help="also time the tick with 100,000 jobs (slow to set up)")
    args = ap.parse_args()

    rows: list[tuple[str, str, str, str, str]] = []  # what, cron, APScheduler, hermes-cron, goal
    peers: dict[str, dict] = {}
    if args.peers:
        why = bench_peers.cron_available()
        peers["cron"] = {"skipped": why} if why else bench_peers.measure_cron(minutes=4, per_minute=5, burst=200)
        venv = os.path.join(tempfile.mkdtemp(prefix="hermes-bench-aps-venv-"), "venv")
        why = bench_peers.aps_available(venv)
        peers["aps"] = {"skipped": why} if why else bench_peers.measure_apscheduler(venv, args.firings, 200)

    def peer(name: str, key: str, fmt) -> str:
        if not args.peers:
            return "-"
        p = peers[name]
        if "skipped" in p:
            return f"not measured ({p['skipped']})"
        return fmt(p[key]) if p.get(key) is not None else "-"

    lat = bench_tick.fire_latency(args.firings)
    rows.append(("fire latency, scheduled second to job start (median / worst)",
                 peer("cron", "latency", lambda v: f"{ms(v['median_ms'])} / {ms(v['max_ms'])} (n={v['n']})"),
                 peer("aps", "latency", lambda v: f"{ms(v['median_ms'])} / {ms(v['max_ms'])} (n={v['n']})"),
                 f"{ms(lat['median_ms'])} / {ms(lat['max_ms'])} (p99 {ms(lat['p99_ms'])}, n={lat['n']})",
                 "under 2 ms median, under 20 ms worst"))
    b200 = bench_tick.burst(200)
    rows.append(("200 jobs due in the same second: boundary to last start",
                 peer("cron", "burst_last_ms", ms), peer("aps", "burst_last_ms", ms),
                 f"{ms(b200['last_ms'])}", "under 0.2 s"))
    b1000 = bench_tick.burst(1000)
    rows.append(("1,000 jobs due in the same second: boundary to last start (daemon peak RSS)", "-", "-",
                 f"{ms(b1000['last_ms'])} ({b1000['peak_rss_mb']} MB)", "under 1 s"))
    idle = bench_tick.idle(60)
    rows.append(("idle daemon memory (RSS)", peer("cron", "idle_rss_mb", lambda v: f"{v} MB"),
                 peer("aps", "idle_rss_mb", lambda v: f"{v} MB"), f"{idle['rss_mb']} MB", "under 25 MB"))
    rows.append(("idle wake-ups and CPU (60 s ticks)", "-", "-",
                 f"{idle['wakeups']} context switches in {idle['seconds']:.0f} s; "
                 f"{idle['cpu_ms'] * 300 / idle['seconds']:.1f} ms CPU per 5 minutes",
                 "1 per tick at most, under 10 ms CPU per 5 minutes"))
    counts = [100, 1000, 10000] + ([100000] if args.big else [])
    for n, r in bench_tick.lock_hold(counts).items():
        rows.append((f"lock held per tick, {n:,} jobs (~{r['due_jobs']} due a minute)", "n/a", "n/a",
                     f"{r['due_median_ms']} ms median, {r['due_max_ms']} ms max; idle {r['idle_median_ms']} ms; "
                     f"after a hand edit {r['reconcile_ms']} ms",
                     {10000: "under 20 ms", 100000: "under 200 ms"}.get(n, "")))
    ours = bench_tick.tick_period_with_long_job(20)["periods"]
    base = bench_tick.baseline_period_with_long_job(15)["periods"]
    rows.append(("tick period (1 s) while a 3 s job runs", "-", "-",
                 f"median {statistics.median(ours):.3f} s, worst deviation {max(abs(p - 1) for p in ours) * 1000:.1f} ms; "
                 f"lock-over-execution baseline: {statistics.median(base):.3f} s",
                 "unchanged, within 50 ms of the interval"))
    status = dict(bench_status.measure(20))
    st = status["hermes-cron status"]
    rows.append(("`hermes-cron status` cold start (median / p90)", "-", "-",
                 f"{ms(statistics.median(st) * 1000)} / {ms(percentile(st, 0.9) * 1000)} "
                 f"(python -c pass: {ms(statistics.median(status['python -c pass (the floor)']) * 1000)})",
                 "under 80 ms"))
    rec = [bench_watchdog.one_round(2.0, 0.2) for _ in range(3)]
    rows.append(("hung daemon (SIGSTOP) to a new daemon's first heartbeat, threshold 2 s", "-", "-",
                 f"median {statistics.median(rec):.2f} s, max {max(rec):.2f} s", "within the threshold + 2 s"))

    print("\n| what | cron 3.0pl1 | APScheduler 3 | hermes-cron | goal |\n| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(`python scripts/bench.py{' --peers' if args.peers else ''}`, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}; the chaos counts are in `python scripts/chaos.py`)")


if __name__ == "__main__":
    main()
