#!/usr/bin/env python3
"""One report against the brief's goals: fire latency, tick period beside a long job (against
the lock-over-execution baseline), lock time against job count, bursts, idle memory and CPU,
`status` cold start, and recovery under the watchdog. With --peers, Debian's cron and
APScheduler 3 are measured in the same run, by the same method (a job that stamps its own
start), on fire latency, idle RSS and a 200-job burst. Prints a markdown table.

The job's start is stamped at its first instruction (scripts/benchlib.py's bare stamp, which
says why); HERMES_CRON_BENCH_STAMP=libc stamps at main() instead, as reports before 2026-11-29
did. The 1,000-job burst is given both ways.

    .venv/bin/python scripts/bench.py              # hermes-cron alone (about 10 minutes)
    .venv/bin/python scripts/bench.py --peers      # with cron and APScheduler (about 17 minutes, root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

import bench_peers
import bench_status
import bench_tick
import bench_watchdog
from benchlib import STAMP_ENV, percentile, stamp_kind


def ms(x: float) -> str:
    return f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", action="store_true", help="also measure Debian cron and APScheduler 3")
    ap.add_argument("--firings", type=int, default=60, help="fire-latency samples (one a second)")
    ap.add_argument("--big", action="store_true", help="also time the tick with 100,000 jobs (slow to set up)")
    args = ap.parse_args()

    rows: list[tuple[str, ...]] = []  # what, cron, APScheduler, hermes-cron, goal, verdict
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

    def vs_aps(key: str, ours: float, get=lambda v: v) -> str:
        """Ours against APScheduler's figure of the same run, as a ratio (lower is better)."""
        p = peers.get("aps", {})
        if not args.peers or "skipped" in p or p.get(key) is None or not get(p[key]):
            return ""
        return f"; x{ours / get(p[key]):.2f} APScheduler's"

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else "**met**" if ok else "**not met**"

    os.sync()  # the last measure's files written out first: each measure meets a quiet disk
    lat = bench_tick.fire_latency(args.firings)
    rows.append(("fire latency, scheduled second to job start (median / worst)",
                 peer("cron", "latency", lambda v: f"{ms(v['median_ms'])} / {ms(v['max_ms'])} (n={v['n']})"),
                 peer("aps", "latency", lambda v: f"{ms(v['median_ms'])} / {ms(v['max_ms'])} (n={v['n']})"),
                 f"{ms(lat['median_ms'])} / {ms(lat['max_ms'])} (p99 {ms(lat['p99_ms'])}, n={lat['n']})"
                 + vs_aps("latency", lat["median_ms"], lambda v: v["median_ms"]),
                 "under 1 ms median, under 3 ms worst", verdict(lat["median_ms"] < 1 and lat["max_ms"] < 3)))
    os.sync()  # the last measure's files written out first: each measure meets a quiet disk
    b200 = bench_tick.burst(200)
    aps200 = peers.get("aps", {}).get("burst_last_ms") if args.peers and "skipped" not in peers.get("aps", {}) else None
    rows.append(("200 jobs due in the same second: boundary to last start",
                 peer("cron", "burst_last_ms", ms), peer("aps", "burst_last_ms", ms),
                 f"{ms(b200['last_ms'])}" + vs_aps("burst_last_ms", b200["last_ms"]),
                 "at most x0.8 APScheduler's, same run",
                 verdict(b200["last_ms"] <= 0.8 * aps200 if aps200 else None)))
    os.sync()  # the last measure's files written out first: each measure meets a quiet disk
    b1000 = bench_tick.burst(1000)
    libc = ""
    if stamp_kind() == "bare":  # the same burst, each job stamping at main(), after its C library's start-up
        os.sync()
        os.environ[STAMP_ENV] = "libc"
        try:
            libc = f"; stamped at main(): {ms(bench_tick.burst(1000)['last_ms'])}"
        finally:
            del os.environ[STAMP_ENV]
    rows.append(("1,000 jobs due in the same second: boundary to last start (daemon peak RSS)", "-", "-",
                 f"{ms(b1000['last_ms'])} ({b1000['peak_rss_mb']} MB){libc}", "under 250 ms",
                 verdict(b1000["last_ms"] < 250)))
    venv_dir = tempfile.mkdtemp(prefix="hermes-bench-venv-")
    try:
        regular = os.path.join(os.path.dirname(bench_status.install(os.path.join(venv_dir, "venv"))), "python")
        idle = bench_tick.idle(300, python=regular)  # (5 minutes: the first tick pays the spare's faults)
    finally:
        shutil.rmtree(venv_dir, ignore_errors=True)
    together = idle["rss_mb"] + idle["spare_private_mb"]
    rows.append(("idle memory (regular install): daemon RSS + the spare supervisor's private memory "
                 "(a spare is held only while a slot is within a tick)",
                 peer("cron", "idle_rss_mb", lambda v: f"{v} MB"), peer("aps", "idle_rss_mb", lambda v: f"{v} MB"),
                 f"{idle['rss_mb']} (anonymous {idle['anon_mb']}, files {idle['file_mb']}) + "
                 f"{idle['spare_private_mb']} = {together:.1f} MB"
                 + vs_aps("idle_rss_mb", together) + f"; with a slot near, the spare held for it: "
                 f"{idle['held_spare_mb']} MB", "under 20 MB together", verdict(together < 20)))
    wakeups = idle["wakeups"]
    ticks = idle["seconds"] / 60
    rows.append(("idle wake-ups and CPU over 5 minutes (60 s ticks)", "-", "-",
                 (f"{wakeups} wake-ups" if wakeups is not None else "wake-ups not counted (no perf)")
                 + f" and {idle['switches']} context switches in {idle['seconds']:.0f} s; "
                 f"{idle['cpu_ms'] * 300 / idle['seconds']:.1f} ms CPU per 5 minutes",
                 "1 per tick at most, under 10 ms CPU per 5 minutes",
                 verdict(wakeups is not None and wakeups <= ticks + 1 and idle["cpu_ms"] * 300 / idle["seconds"] < 10)))
    counts = [100, 1000, 10000] + ([100000] if args.big else [])
    goals = {10000: 5.0, 100000: 50.0}
    for n, r in bench_tick.lock_hold(counts).items():
        rows.append((f"lock held per tick, {n:,} jobs (~{r['due_jobs']} due a minute)", "n/a", "n/a",
                     f"{r['due_median_ms']} ms median, {r['due_max_ms']} ms max; idle {r['idle_median_ms']} ms; "
                     f"after a hand edit {r['reconcile_ms']} ms",
                     f"under {goals[n]:g} ms" if n in goals else "",
                     verdict(r["due_median_ms"] < goals[n]) if n in goals else "-"))
    os.sync()  # the last measure's files written out first: each measure meets a quiet disk
    ours = bench_tick.tick_period_with_long_job(20)["periods"]
    base = bench_tick.baseline_period_with_long_job(15)["periods"]
    worst = max(abs(p - 1) for p in ours) * 1000
    rows.append(("tick period (1 s) while a 3 s job runs", "-", "-",
                 f"median {statistics.median(ours):.3f} s, worst deviation {worst:.1f} ms; "
                 f"lock-over-execution baseline: {statistics.median(base):.3f} s",
                 "unchanged, within 50 ms of the interval", verdict(worst < 50)))
    os.sync()  # the last measure's files written out first: each measure meets a quiet disk
    status = dict(bench_status.measure(20))
    st = status["hermes-cron status"]
    rows.append(("`hermes-cron status` cold start (median / p90)", "-", "-",
                 f"{ms(statistics.median(st) * 1000)} / {ms(percentile(st, 0.9) * 1000)} "
                 f"(python -c pass: {ms(statistics.median(status['python -c pass (the floor)']) * 1000)})",
                 "under 40 ms", verdict(statistics.median(st) < 0.040)))
    rec = [bench_watchdog.one_round(2.0, 0.2) for _ in range(3)]
    rows.append(("hung daemon (SIGSTOP) to a new daemon's first heartbeat, threshold 2 s", "-", "-",
                 f"median {statistics.median(rec):.2f} s, max {max(rec):.2f} s", "within the threshold + 2 s",
                 verdict(max(rec) < 4.0)))

    print("\n| what | cron 3.0pl1 | APScheduler 3 | hermes-cron | goal | verdict |\n"
          "| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(`python scripts/bench.py{' --peers' if args.peers else ''}{' --big' if args.big else ''}`, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; jobs stamp their start "
          f"{'at their first instruction' if stamp_kind() == 'bare' else 'at main()'}; ratios are against "
          "APScheduler in the same run, lower is better; the chaos counts are in `python scripts/chaos.py`)")


if __name__ == "__main__":
    main()
