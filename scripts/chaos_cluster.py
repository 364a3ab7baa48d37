#!/usr/bin/env python3
"""Fault injection on a cluster: three nodes (daemons, each with its own home and node name) on
one PostgreSQL store, with --tick-interval 1 and a short lease, for a bounded time:
- kill -9 of a random node's daemon (its supervisors and jobs go on; it is restarted a moment
  later, or not before its lease has run out);
- SIGSTOP of a random node (its daemon and supervisors) for shorter and longer than the lease;
- a PostgreSQL restart, when the run started its own server;
- CLI edits (add, pause, resume, remove) from random hosts.
Then it stops everything and checks, from the jobs' own start records and the database:
- no run started twice, and no (job, slot) started twice but as a new attempt of a lost run;
- every slot of the stable jobs, from a few seconds in to a few seconds before the end, is
  accounted for (ran, skipped, missed, lost or interrupted);
- every edit a command reported done is in the database;
- no job process is left running.

    .venv/bin/python scripts/chaos.py --store auto --minutes 10     # three nodes, own PostgreSQL
    .venv/bin/python scripts/chaos_cluster.py --store postgresql://postgres@127.0.0.1:5432 --minutes 1
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

LEASE = "4"
STABLE = {"sec": ("* * * * * *", "true", []), "two": ("every 2s", "sleep 0.3", []),
          "long": ("every 3s", "sleep 5", []), "again": ("every 4s", "sleep 1", ["--on-lost", "rerun"])}


class ClusterChaos:
    def __init__(self, seconds: float, seed: int, url: str, work: str, server_root: str | None, nodes: int = 3):
        self.seconds, self.rng, self.url, self.work, self.server_root = seconds, random.Random(seed), url, work, server_root
        self.homes = [os.path.join(work, f"node{i}", "hermes") for i in range(nodes)]
        self.starts = os.path.join(work, "starts.log")
        self.daemons: list[subprocess.Popen | None] = [None] * nodes
        self.frozen: set[int] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.model: dict[str, str] = {}  # edited job -> "enabled" / "paused" / "removed", as commands reported
        self.stats = Counter()

    def env(self, i: int) -> dict:
        return {**os.environ, "HERMES_HOME": self.homes[i], "HERMES_CRON_STORE": self.url, "HERMES_CRON_NODE": f"node{i}"}

    def cli(self, i: int, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hermes_cron", *args], env=self.env(i), capture_output=True,
                              text=True, timeout=60)

    def command(self, body: str) -> list[str]:
        return ["--shell", "--", f'echo "$HERMES_CRON_JOB $HERMES_CRON_SCHEDULED $HERMES_CRON_RUN_ID $$" >> '
                f"{self.starts}; {body}"]

    def start(self, i: int) -> None:
        os.makedirs(self.homes[i], exist_ok=True)
        log = open(os.path.join(self.work, f"node{i}.log"), "ab")
        self.daemons[i] = subprocess.Popen(
            [sys.executable, "-m", "hermes_cron", "run", "--tick-interval", "1", "--lease", LEASE, "--log-format",
             "json"], env=self.env(i), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.stats["daemons started"] += 1

    # actors ---------------------------------------------------------------------------

    def faults(self) -> None:
        while not self.stop.wait(self.rng.uniform(2.0, 6.0)):
            i = self.rng.randrange(len(self.homes))
            d = self.daemons[i]
            if d is None or d.poll() is not None:
                self.start(i)
                continue
            kind = self.rng.choice(["kill", "kill", "stop", "stop", "pg"] if self.server_root else ["kill", "stop"])
            if kind == "kill":
                d.kill()
                d.wait()
                self.stats["kill -9"] += 1
                self.stop.wait(self.rng.choice([0.5, 2.0, 7.0]))  # back before, or after, its lease ends
                self.start(i)
            elif kind == "stop":
                group = self._group(d.pid)
                for pid in group:
                    _signal(pid, signal.SIGSTOP)
                self.stats["SIGSTOP"] += 1
                self.stop.wait(self.rng.choice([1.0, 3.0, 7.0]))  # shorter and longer than the lease
                for pid in group:
                    _signal(pid, signal.SIGCONT)
            else:
                from pg_server import pg_ctl

                pg_ctl("restart", "-m", "fast", root=self.server_root)
                self.stats["PostgreSQL restarts"] += 1

    @staticmethod
    def _group(pid: int) -> list[int]:
        """The daemon and its supervisors (its children), not the jobs (their own groups)."""
        out = [pid]
        try:
            for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
                out.append(int(child))
        except OSError:
            pass
        return out

    def editor(self) -> None:
        n = 0
        while not self.stop.wait(self.rng.uniform(0.5, 2.0)):
            i = self.rng.randrange(len(self.homes))
            names = sorted(k for k, v in self.model.items() if v != "removed")
            op = self.rng.choice(["add", "pause", "resume", "remove"] if names else ["add"])
            if op == "add":
                n += 1
                name = f"e{n}"
                r = self.cli(i, "add", name, "-s", self.rng.choice(["* * * * * *", "every 2s"]), *self.command("true"))
                state = "enabled"
            else:
                name = self.rng.choice(names)
                r = self.cli(i, op, name)
                state = {"pause": "paused", "resume": "enabled", "remove": "removed"}[op]
            if r.returncode == 0:
                self.model[name] = state
                self.stats["edits done"] += 1
            else:
                self.stats["edits refused"] += 1

    # the run --------------------------------------------------------------------------

    def run(self) -> list[str]:
        assert self.cli(0, "db", "init").returncode == 0
        for name, (sched, body, extra) in STABLE.items():
            r = self.cli(0, "add", name, "-s", sched, "--keep-runs", "1000000", "--misfire-grace", "2s", *extra,
                         *self.command(body))
            assert r.returncode == 0, r.stderr
        for i in range(len(self.homes)):
            self.start(i)
        t0 = time.time()
        actors = [threading.Thread(target=f, daemon=True) for f in (self.faults, self.editor)]
        for a in actors:
            a.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for a in actors:
            a.join(60)
        t1 = time.time()
        for d in self.daemons:  # a clean end: every node up again, then stopped with its runs
            if d is not None and d.poll() is None:
                for pid in self._group(d.pid):
                    _signal(pid, signal.SIGCONT)
        for i, d in enumerate(self.daemons):
            if d is None or d.poll() is not None:
                self.start(i)
        time.sleep(float(LEASE) * 2)
        for i in range(len(self.homes)):
            self.cli(i, "stop", "--jobs", "--timeout", "30")
        for d in self.daemons:
            if d is not None:
                try:
                    d.wait(30)
                except subprocess.TimeoutExpired:
                    d.kill()
        return self.check(t0 + 5, t1 - 5)

    def check(self, lo: float, hi: float) -> list[str]:
        import psycopg

        bad = []
        with psycopg.connect(self.url) as conn:
            rows = conn.execute("SELECT id, job, scheduled, attempt, status, missed_count, first_missed "
                                "FROM hc_runs").fetchall()
            jobs = {r[0]: r[1] for r in conn.execute("SELECT name, entry FROM hc_jobs")}
        by_id = {r[0]: r for r in rows}
        starts = [line.split() for line in open(self.starts).read().splitlines() if len(line.split()) == 4]
        for run_id, n in Counter(s[2] for s in starts).items():
            if n > 1:
                bad.append(f"run {run_id} started {n} times")
        slot_starts = Counter((s[0], s[1], by_id.get(int(s[2]), (0, 0, 0, 0))[3]) for s in starts)
        bad += [f"{k[0]} slot {k[1]} attempt {k[2]} started {n} times" for k, n in slot_starts.items() if n > 1]
        for job in ("sec", "two"):
            step = 1.0 if job == "sec" else 2.0
            covered = set()
            for _, j, sched, _, status, missed, first in rows:
                if j != job or sched is None:
                    continue
                if status == "missed" and missed and first is not None:
                    covered.update(round(first + k * step, 3) for k in range(int(missed)))
                covered.add(round(sched, 3))
            slots = sorted({round(r[2], 3) for r in rows if r[1] == job and r[2] is not None})
            if not slots:
                bad.append(f"{job}: no runs at all")
                continue
            t = slots[0]
            while t < hi:
                if t > lo and round(t, 3) not in covered:
                    bad.append(f"{job}: slot {t} not accounted for")
                t += step
        for name, state in self.model.items():
            if state == "removed" and name in jobs:
                bad.append(f"{name}: removed by a command, still in the store")
            elif state != "removed" and name not in jobs:
                bad.append(f"{name}: edit reported done, job missing")
            elif state != "removed":
                enabled = jobs[name].get("enabled", True)
                if enabled != (state == "enabled"):
                    bad.append(f"{name}: reported {state}, stored enabled={enabled}")
        left = subprocess.run(["pgrep", "-f", self.starts], capture_output=True, text=True).stdout.split()
        if left:
            bad.append(f"job processes left running: {left}")
        self.stats["runs"] = len(rows)
        self.stats["lost"] = sum(1 for r in rows if r[4] == "lost")
        self.stats["second attempts"] = sum(1 for r in rows if r[3] == 2)
        self.stats["starts"] = len(starts)
        return bad


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="auto", help="postgresql://... (a server where a database may be created), "
                    "or auto: start a throwaway server")
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args(argv)
    from pg_server import new_database, own_server, stop

    server_root = None
    if a.store == "auto":
        server_root = tempfile.mkdtemp(prefix="hermes-cron-chaos-pg-")
        base = own_server(server_root)
    else:
        base = a.store.rsplit("/", 1)[0] if a.store.count("/") > 2 else a.store
    work = tempfile.mkdtemp(prefix="hermes-cron-chaos-cluster-")
    bad: list[str] = ["did not finish"]
    try:
        chaos = ClusterChaos(a.minutes * 60, a.seed, new_database(base), work, server_root)
        bad = chaos.run()
        print(f"cluster chaos: {a.minutes:g} min, seed {a.seed}, 3 nodes: " + ", ".join(
            f"{k} {v}" for k, v in sorted(chaos.stats.items())))
        for b in bad[:50]:
            print("VIOLATION:", b)
        print(f"{len(bad)} violation(s)")
        return 1 if bad else 0
    finally:
        if server_root:
            stop(server_root)
        if bad:
            print(f"kept for inspection: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
