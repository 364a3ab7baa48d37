#!/usr/bin/env python3
"""The shared store's figures beside the local store's, on this machine:

- fire latency (slot to start, median / p99 / worst) of 20 every-second jobs, over 20 s, with
  three nodes on one PostgreSQL, and with one daemon on the local store;
- a burst of 1,000 jobs due at one instant: from the boundary to the last start;
- the claim transaction per tick with 10,000 jobs (10 of them due at each tick);
- the time from kill -9 of a node running a job (`--on-lost rerun`, lease 6 s) to that work
  running on another node.

    .venv/bin/python scripts/bench_cluster.py                 # starts a throwaway PostgreSQL
    .venv/bin/python scripts/bench_cluster.py --base postgresql://postgres@127.0.0.1:5432
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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from hermes_cron.contract.paths import Home  # noqa: E402
from hermes_cron.logic.jobs import Job  # noqa: E402


def env_for(home: str, store: str | None, node: str) -> dict:
    env = {**os.environ, "HERMES_HOME": home, "HERMES_CRON_NODE": node}
    env.pop("HERMES_CRON_STORE", None)
    if store:
        env["HERMES_CRON_STORE"] = store
    return env


def cli(home: str, store: str | None, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hermes_cron", *args], env=env_for(home, store, "cli"),
                          capture_output=True, text=True, timeout=120)


def daemon(home: str, store: str | None, node: str, *args: str) -> subprocess.Popen:
    os.makedirs(home, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "hermes_cron", "run", "--tick-interval", "1", "--log-file",
                             os.path.join(os.path.dirname(home), f"{node}.log"), *args],
                            env=env_for(home, store, node), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def put_jobs(home: str, store: str | None, jobs: list[Job]) -> None:
    """Write many jobs at once (the CLI adds one per command)."""
    if store is None:
        os.makedirs(os.path.join(home, "cron"), mode=0o700, exist_ok=True)
        from hermes_cron.store import jobstore

        jobstore.mutate(Home(home), lambda d: d.update({j.name: j for j in jobs}))
        return
    import psycopg

    with psycopg.connect(store, autocommit=True) as conn:
        with conn.transaction():
            for j in jobs:
                conn.execute("INSERT INTO hc_jobs (name, entry) VALUES (%s, %s)", (j.name, json.dumps(j.to_dict())))
            conn.execute("UPDATE hc_meta SET value = (value::bigint + 1)::text WHERE key = 'defs_version'")


def runs(home: str, store: str | None) -> list[tuple]:
    """(job, scheduled, started_at, node) of every run that started."""
    if store is None:
        import sqlite3

        c = sqlite3.connect(os.path.join(home, "cron", "state.db"))
        rows = c.execute("SELECT job, scheduled, started_at, NULL FROM runs WHERE started_at IS NOT NULL").fetchall()
        c.close()
        return rows
    import psycopg

    with psycopg.connect(store) as conn:
        return conn.execute("SELECT job, scheduled, started_at, node FROM hc_runs "
                            "WHERE started_at IS NOT NULL").fetchall()


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(work: str, store: str | None, nodes: int) -> str:
    homes = [os.path.join(work, f"n{i}", "hermes") for i in range(nodes)]
    now = time.time()
    put_jobs(homes[0], store, [Job(f"j{i:02d}", ("true",), "* * * * * *", "UTC", created=now, anchor=int(now))
                               for i in range(20)])
    procs = [daemon(h, store, f"n{i}") for i, h in enumerate(homes)]
    time.sleep(22)
    stop(procs)
    found = [r for h in (homes if store is None else homes[:1]) for r in runs(h, store)]
    lat = [(s - sch) * 1000 for _, sch, s, _ in found if sch is not None]
    lat = lat[len(lat) // 10:]  # the first second or two: daemons starting
    return (f"{statistics.median(lat):.2f} / {pct(lat, 0.99):.2f} / {max(lat):.2f} ms over {len(lat)} starts"
            + (f", on {len({n for *_, n in found})} nodes" if store else ""))


def burst(work: str, store: str | None, nodes: int, count: int = 1000) -> str:
    homes = [os.path.join(work, f"b{i}", "hermes") for i in range(nodes)]
    for h in homes:
        os.makedirs(h, exist_ok=True)
    procs = [daemon(h, store, f"b{i}") for i, h in enumerate(homes)]
    time.sleep(3)
    at = float(int(time.time()) + 12)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(at))
    put_jobs(homes[0], store, [Job(f"burst{i:04d}", ("true",), f"at {iso}", "UTC", created=time.time())
                               for i in range(count)])
    for p in procs:
        p.send_signal(signal.SIGUSR1)
    deadline = time.time() + 60
    while time.time() < deadline:
        started = [s for h in (homes if store is None else homes[:1]) for _, _, s, _ in runs(h, store)]
        if len(started) >= count:
            break
        time.sleep(0.5)
    stop(procs)
    if len(started) < count:
        return f"only {len(started)} of {count} started"
    return f"{(max(started) - at) * 1000:.0f} ms from the boundary to the last of {count} starts"


def claim_time(work: str, store: str | None, count: int = 10_000) -> str:
    from hermes_cron.contract.procinfo import ProcId
    from hermes_cron.engine.ticker import Scheduler
    from hermes_cron.store.opening import open_store

    home = Home(os.path.join(work, "claim", "hermes"), store)
    os.makedirs(home.root, exist_ok=True)
    home.ensure()
    now = time.time()
    jobs = [Job(f"c{i:05d}", ("true",), "every 1000s", "UTC", created=now, anchor=int(now) + (i % 1000))
            for i in range(count)]
    put_jobs(home.root, store, jobs)
    s = open_store(home)
    if store is not None:
        s.epoch = 1
    sched = Scheduler(home, s, ProcId.me(), "boot")
    sched.claim(now)  # the first tick reconciles every job: not what is measured
    held = []
    for k in range(1, 11):
        report = sched.claim(int(now) + k + 0.5)  # ten jobs due at each
        held.append(report.lock_held * 1000)
    s.close()
    return f"median {statistics.median(held):.1f} ms, worst {max(held):.1f} ms (10 due per tick, {count} jobs)"


def takeover(work: str, store: str) -> str:
    homes = [os.path.join(work, f"t{i}", "hermes") for i in range(2)]
    a = daemon(homes[0], store, "ta", "--lease", "6")
    time.sleep(3)
    cli(homes[0], store, "add", "hand", "-s", "every 1000s", "--on-lost", "rerun", "--", "sleep", "30")
    subprocess.run([sys.executable, "-m", "hermes_cron", "trigger", "hand"], env=env_for(homes[0], store, "ta"),
                   capture_output=True, timeout=30)
    import psycopg

    def rows():
        with psycopg.connect(store) as conn:
            return conn.execute("SELECT attempt, node, started_at FROM hc_runs WHERE job = 'hand' ORDER BY id").fetchall()

    deadline = time.time() + 20
    while time.time() < deadline and not (rows() and rows()[0][2]):
        time.sleep(0.2)
    b = daemon(homes[1], store, "tb", "--lease", "6")
    time.sleep(3)
    a.kill()
    killed = time.time()
    deadline = killed + 40
    while time.time() < deadline:
        r = rows()
        if len(r) > 1 and r[1][2]:
            stop([b])
            subprocess.run(["pkill", "-f", "sleep 30"], capture_output=True)
            return f"{r[1][2] - killed:.1f} s from kill -9 to attempt 2 running on {r[1][1]} (lease 6 s)"
        time.sleep(0.2)
    stop([b])
    return "not taken over within 40 s"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="a PostgreSQL server URL where databases may be created (default: start one)")
    a = ap.parse_args()
    own = None
    if a.base is None:
        from pg_server import own_server

        own = tempfile.mkdtemp(prefix="hermes-cron-bench-pg-")
        base = own_server(own)
    else:
        base = a.base
    from pg_server import new_database

    work = tempfile.mkdtemp(prefix="hermes-cron-bench-cluster-")
    try:
        def db() -> str:
            url = new_database(base)
            cli(os.path.join(work, "init", "hermes"), url, "db", "init")
            return url

        print("figure                     | local store (1 daemon)                | shared store (3 nodes, PostgreSQL)")
        print(f"fire latency med/p99/worst | {latency(work + '/l', None, 1):<37} | {latency(work + '/p', db(), 3)}")
        print(f"1,000 jobs due at once     | {burst(work + '/lb', None, 1):<37} | {burst(work + '/pb', db(), 3)}")
        print(f"claim per tick, 10,000 jobs| {claim_time(work + '/lc', None):<37} | {claim_time(work + '/pc', db())}")
        print(f"kill -9 to work elsewhere  | {'-':<37} | {takeover(work + '/pt', db())}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own is not None:
            from pg_server import stop as stop_server

            stop_server(own)
    return 0


if __name__ == "__main__":
    sys.exit(main())
