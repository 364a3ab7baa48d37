#!/usr/bin/env python3
"""Fault injection with an invariant checker.

For a bounded time, on one HERMES_HOME with --tick-interval 1 and a mix of every-second,
every-few-seconds, long-running, failing and one-shot jobs, it runs at once:
- daemons (extra ones are started too: the daemon lock must turn them away), and programs
  calling tick() from the library;
- kill -9 of the daemon at random moments; some daemons get injected delays inside the tick
  lock and between claim and start, so kills land in those windows too; each kill is
  followed by a new daemon;
- SIGSTOP/SIGCONT of the daemon, with hermes-cron-watchdog running;
- CLI edits (add, edit, pause, resume, remove) at random moments;
- a sampler that checks jobs.json and state.db are valid, over and over.
Then it settles (a clean daemon adopts what is left, `stop --jobs` ends the rest) and checks:
- no slot started twice (from the jobs' own start records, not only from the database);
- every due slot of the jobs left unedited started, or is recorded as skipped, missed or
  interrupted: none silently absent;
- every edit that a command reported done is in jobs.json;
- the stores were valid at every sample;
- every job process that started is recorded, and none is left running.
Any violation fails the run with its evidence.

    .venv/bin/python scripts/chaos.py --minutes 1        # what CI runs (through tests/test_chaos.py)
    .venv/bin/python scripts/chaos.py --minutes 10 --seed 7
    .venv/bin/python scripts/chaos.py --store auto --minutes 10   # three nodes on PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

GRACE = "2s"
KEEP = "1000000"  # keep every run record: the checks need all of them (retention is tested elsewhere)
STABLE_JOBS = {
    # name: (schedule, overlap, command run after the start record, extra options)
    "sec": ("* * * * * *", "skip", "true", []),
    "every2": ("every 2s", "skip", "sleep 0.3", []),
    "few": ("*/3 * * * * *", "skip", "true", []),
    "long": ("every 2s", "skip", "sleep 5", []),
    "allow": ("every 3s", "allow", "sleep 4", []),
    "fail": ("every 2s", "skip", "exit 3", []),
    "replace": ("every 4s", "replace", "sleep 6", ["--kill-grace", "1s"]),
    "slowpoke": ("every 5s", "skip", "sleep 1", ["--timeout", "0.5s", "--kill-grace", "0.5s"]),
}


@dataclass
class Stats:
    kills: int = 0
    stops: int = 0
    daemons_started: int = 0
    extra_daemons_refused: int = 0
    extra_daemons_ran: int = 0
    ticks_called: int = 0
    edits_ok: int = 0
    edits_refused: int = 0
    samples: int = 0
    bad_samples: list[str] = field(default_factory=list)


class Chaos:
    def __init__(self, seconds: float, seed: int, home: str):
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.home = home
        self.cron = os.path.join(home, "cron")
        self.starts = os.path.join(home, "starts.log")
        self.env = {**os.environ, "HERMES_HOME": home}
        self.env.pop("HERMES_CRON_FAULTS", None)
        self.stats = Stats()
        self.stop = threading.Event()
        self.daemons: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self.model: dict[str, dict] = {}  # edited jobs as the commands reported them
        self.stopped: set[int] = set()

    # helpers -------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hermes_cron", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def command(self, name: str, body: str) -> list[str]:
        record = f'echo "$HERMES_CRON_JOB $HERMES_CRON_SCHEDULED $HERMES_CRON_RUN_ID $$" >> {self.starts}'
        return ["--shell", "--", f"{record}; {body}"]

    def start_daemon(self, faults: str | None = None) -> subprocess.Popen:
        env = dict(self.env)
        if faults:
            env["HERMES_CRON_FAULTS"] = faults
        log = open(os.path.join(self.home, "daemons.log"), "ab")
        p = subprocess.Popen([sys.executable, "-m", "hermes_cron", "run", "--tick-interval", "1",
                              "--heartbeat-every", "1", "--log-format", "json"],
                             env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        with self.lock:
            self.daemons.append(p)
            self.stats.daemons_started += 1
        return p

    def live_daemon(self) -> int | None:
        try:
            with open(os.path.join(self.cron, "hermes-cron.pid")) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
            return pid
        except ProcessLookupError:
            return None

    # actors --------------------------------------------------------------------------

    def keeper(self) -> None:
        """Keep a daemon up; now and then start a second one, which the daemon lock must refuse."""
        while not self.stop.is_set():
            with self.lock:
                self.daemons = [d for d in self.daemons if d.poll() is None]
            pid = self.live_daemon()
            if pid is None or pid in self.stopped:
                faults = self.rng.choice([None, None, "tick.locked=sleep:0.2", "dispatch.claimed=sleep:0.2",
                                          "tick.locked=sleep:0.1,dispatch.claimed=sleep:0.1"])
                self.start_daemon(faults)
            elif self.rng.random() < 0.15:
                extra = self.start_daemon()
                try:
                    extra.wait(10)
                    if extra.returncode != 0:
                        self.stats.extra_daemons_refused += 1
                except subprocess.TimeoutExpired:
                    self.stats.extra_daemons_ran += 1  # the lock holder must have just died
            self.stop.wait(self.rng.uniform(0.3, 1.5))

    def killer(self) -> None:
        while not self.stop.wait(self.rng.uniform(2.0, 6.0)):
            pid = self.live_daemon()
            if pid is None:
                continue
            if self.rng.random() < 0.7:
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.stats.kills += 1
                except ProcessLookupError:
                    pass
            else:
                try:
                    os.kill(pid, signal.SIGSTOP)
                    self.stats.stops += 1
                    self.stopped.add(pid)
                except ProcessLookupError:
                    continue
                held = self.rng.choice([0.5, 1.5, 6.0])  # shorter and longer than the watchdog's threshold
                self.stop.wait(held)
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                self.stopped.discard(pid)

    def ticker(self) -> subprocess.Popen:
        code = ("import sys, time, random\n"
                "from hermes_cron import tick\n"
                "from hermes_cron.errors import HermesCronError\n"
                "from hermes_cron.contract.logs import Silent\n"
                f"end = time.time() + {self.seconds}\n"
                "n = 0\n"
                "while time.time() < end:\n"
                "    try:\n"
                f"        tick({self.home!r}, log=Silent()); n += 1\n"
                "    except HermesCronError:\n"
                "        pass\n"
                "    time.sleep(random.uniform(0.05, 0.8))\n"
                "print(n)\n")
        return subprocess.Popen([sys.executable, "-c", code], env=self.env, stdout=subprocess.PIPE, text=True)

    def editor(self) -> None:
        n = 0
        while not self.stop.wait(self.rng.uniform(0.3, 1.5)):
            names = sorted(self.model)
            op = self.rng.choice(["add", "add", "edit", "pause", "resume", "remove"] if names else ["add"])
            if op == "add":
                n += 1
                name = f"e{n}"
                sched = self.rng.choice(["* * * * * *", "every 2s", "*/2 * * * * *", "every 3s"])
                r = self.cli("add", name, "-s", sched, "--misfire-grace", GRACE, "--keep-runs", KEEP,
                             *self.command(name, "true"))
                if r.returncode == 0:
                    self.model[name] = {"schedule": sched, "enabled": True}
            else:
                name = self.rng.choice(names)
                if op == "edit":
                    sched = self.rng.choice(["* * * * * *", "every 2s", "*/4 * * * * *"])
                    r = self.cli("edit", name, "-s", sched)
                    if r.returncode == 0:
                        self.model[name]["schedule"] = sched
                elif op in ("pause", "resume"):
                    r = self.cli(op, name)
                    if r.returncode == 0:
                        self.model[name]["enabled"] = op == "resume"
                else:
                    r = self.cli("remove", name)
                    if r.returncode == 0:
                        del self.model[name]
            if r.returncode == 0:
                self.stats.edits_ok += 1
            else:
                self.stats.edits_refused += 1  # e.g. lock busy past its bounded wait: reported, not done

    def sampler(self) -> None:
        while not self.stop.wait(0.25):
            self.stats.samples += 1
            try:
                with open(os.path.join(self.cron, "hermes-cron-jobs.json")) as f:
                    doc = json.load(f)
                assert doc["version"] == 1 and isinstance(doc["jobs"], list)
            except (OSError, ValueError, AssertionError, KeyError) as e:
                self.stats.bad_samples.append(f"jobs.json: {e!r}")
            try:
                conn = sqlite3.connect(f"file:{os.path.join(self.cron, 'state.db')}?mode=ro", uri=True, timeout=5)
                try:
                    result = conn.execute("PRAGMA quick_check").fetchone()[0]
                    if result != "ok":
                        self.stats.bad_samples.append(f"state.db: {result}")
                finally:
                    conn.close()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e):
                    self.stats.bad_samples.append(f"state.db: {e}")

    # the run -------------------------------------------------------------------------

    def setup(self) -> None:
        for name, (sched, overlap, body, extra) in STABLE_JOBS.items():
            r = self.cli("add", name, "-s", sched, "--overlap", overlap, "--misfire-grace", GRACE,
                         "--keep-runs", KEEP, *extra, *self.command(name, body))
            assert r.returncode == 0, r.stderr
        t0 = time.time()
        for k in range(1, 1 + max(1, int(self.seconds // 10))):
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 5 + 10 * k - 5))
            r = self.cli("add", f"once{k}", "-s", f"at {at}", "--misfire-grace", GRACE, "--keep-runs", KEEP,
                         *self.command(f"once{k}", "sleep 2"))
            assert r.returncode == 0, r.stderr

    def run(self) -> int:
        self.setup()
        self.begin = time.time()
        dog_log = open(os.path.join(self.home, "watchdog.log"), "ab")
        dog = subprocess.Popen([sys.executable, "-m", "hermes_cron_watchdog", "--stale-after", "3",
                                "--check-every", "0.3", "--backoff", "0.5", "--burst", "1000", "--log-format", "json"],
                               env=self.env, stdout=dog_log, stderr=dog_log, start_new_session=True)
        tickers = [self.ticker() for _ in range(2)]
        actors = [threading.Thread(target=f, daemon=True) for f in (self.keeper, self.killer, self.editor, self.sampler)]
        for a in actors:
            a.start()
        time.sleep(self.seconds)
        self.stop.set()
        for a in actors:
            a.join(60)
        dog.terminate()
        dog.wait()
        for t in tickers:
            out, _ = t.communicate(60)
            self.stats.ticks_called += int(out.strip() or 0)
        self.chaos_end = time.time()
        self.settle()
        return self.check()

    def settle(self) -> None:
        """End the chaos cleanly: wake any stopped daemon, let one clean daemon adopt and record
        what is in flight, then stop it and every job still running."""
        with self.lock:
            for d in self.daemons:
                if d.poll() is None:
                    try:
                        os.kill(d.pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
        self.cli("stop", "--timeout", "5")
        final = self.start_daemon()
        time.sleep(4)
        self.settle_end = time.time()
        self.cli("stop", "--timeout", "5", "--jobs")
        final.wait(30)
        for d in self.daemons:
            if d.poll() is None:
                d.kill()
                d.wait()
        self.cli("list")  # records results that finished unwatched

    # the checks ----------------------------------------------------------------------

    def runs(self) -> list[dict]:
        conn = sqlite3.connect(os.path.join(self.cron, "state.db"))
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id")]
        finally:
            conn.close()

    def check(self) -> int:
        from hermes_cron.store import jobstore
        from hermes_cron.contract.paths import Home
        from hermes_cron.logic.schedule import upcoming

        violations: list[str] = []
        runs = self.runs()
        by_id = {r["id"]: r for r in runs}
        starts = []
        with open(self.starts) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    starts.append((parts[0], float(parts[1]) if parts[1] else None, int(parts[2]), int(parts[3])))

        # 1. no slot started twice (process-level evidence)
        scheduled_starts = Counter((job, slot) for job, slot, run_id, _ in starts
                                   if by_id.get(run_id, {}).get("trigger") == "schedule")
        for (job, slot), n in scheduled_starts.items():
            if n > 1:
                violations.append(f"slot started {n} times: {job} at {slot}")
        run_starts = Counter(run_id for _, _, run_id, _ in starts)
        for run_id, n in run_starts.items():
            if n > 1:
                violations.append(f"run {run_id} started {n} times")

        # 2. every started job process is recorded, finished, and none is left running
        for job, slot, run_id, pid in starts:
            r = by_id.get(run_id)
            if r is None:
                violations.append(f"a process of {job} (run {run_id}, pid {pid}) started but no run is recorded")
            elif r["state"] != "done":
                violations.append(f"run {run_id} of {job} started but is still {r['state']} after settling")
        for r in runs:
            if r["state"] != "done":
                violations.append(f"run {r['id']} of {r['job']} left {r['state']}")
        leftover = self.leftover_processes()
        for pid, cmd in leftover:
            violations.append(f"process {pid} of this home still running: {cmd}")

        # 3. every due slot of the unedited jobs is accounted for
        defs = jobstore.load(Home(self.home)).jobs
        accounted = defaultdict(set)
        missed_ranges = defaultdict(list)
        for r in runs:
            if r["trigger"] != "schedule" or r["scheduled"] is None:
                continue
            if r["status"] == "missed":
                missed_ranges[r["job"]].append((r["first_missed"], r["scheduled"]))
            else:
                accounted[r["job"]].add(r["scheduled"])
        horizon = self.settle_end - 2.0
        slot_total = 0
        for name in list(STABLE_JOBS) + [n for n in defs if n.startswith("once")]:
            job = defs[name]
            for slot in upcoming(job.compiled, job.created, 100000):
                if slot > horizon:
                    break
                if slot < self.begin:
                    continue
                slot_total += 1
                covered = slot in accounted[name] or any(a - 1e-6 <= slot <= b + 1e-6 for a, b in missed_ranges[name])
                if not covered:
                    violations.append(f"slot silently absent: {name} at {slot}")
        for name in (n for n in defs if n.startswith("once")):
            ran = [r for r in runs if r["job"] == name and r["status"] not in ("missed",)]
            if len(ran) > 1:
                violations.append(f"one-shot {name} has {len(ran)} runs")

        # 4. every edit the commands reported done is present
        edited = {n: j for n, j in defs.items() if n[0] == "e" and n[1:].isdigit()}
        if set(edited) != set(self.model):
            violations.append(f"edited jobs differ: store {sorted(edited)} vs commands {sorted(self.model)}")
        for name, want in self.model.items():
            job = edited.get(name)
            if job is not None and (job.schedule != want["schedule"] or job.enabled != want["enabled"]):
                violations.append(f"edit lost: {name} is {job.schedule}/{job.enabled}, commands said {want}")

        # 5. stores valid at every sample
        violations += [f"invalid store sample: {b}" for b in self.stats.bad_samples]

        statuses = Counter(r["status"] for r in runs)
        missed_slots = sum(r["missed_count"] or 0 for r in runs if r["status"] == "missed")
        s = self.stats
        print("\n| chaos | count |\n| --- | --- |")
        for k, v in [("seconds of chaos", round(self.chaos_end - self.begin)),
                     ("daemons started", s.daemons_started), ("kill -9", s.kills), ("SIGSTOP/SIGCONT", s.stops),
                     ("second daemons refused by the lock", s.extra_daemons_refused),
                     ("tick() calls from the library", s.ticks_called),
                     ("CLI edits done / refused", f"{s.edits_ok} / {s.edits_refused}"),
                     ("store samples (all valid)" if not s.bad_samples else "store samples (INVALID seen)", s.samples),
                     ("job processes started", len(starts)), ("run records", len(runs)),
                     ("runs by status", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items(), key=str))),
                     ("slots recorded as missed", missed_slots),
                     ("due slots checked for an account", slot_total),
                     ("violations", len(violations))]:
            print(f"| {k} | {v} |")
        if violations:
            print("\nVIOLATIONS:")
            for v in violations[:50]:
                print(f"- {v}")
            return 1
        return 0

    def leftover_processes(self) -> list[tuple[int, str]]:
        out = []
        want = f"HERMES_HOME={self.home}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if want not in f.read().split(b"\0"):
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
            except OSError:
                continue
            out.append((int(entry), cmd[:120]))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the home folder for inspection")
    ap.add_argument("--store", help="postgresql://... (a server where a database may be created), or auto (a "
                    "throwaway one): three nodes on the shared store instead (scripts/chaos_cluster.py)")
    args = ap.parse_args()
    if args.store:
        import chaos_cluster

        sys.exit(chaos_cluster.main(["--store", args.store, "--minutes", str(args.minutes)]
                                    + (["--seed", str(args.seed)] if args.seed is not None else [])))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    home = tempfile.mkdtemp(prefix="hermes-chaos-")
    print(f"chaos: {args.minutes:g} min, seed {seed}, home {home}")
    code = 1
    try:
        code = Chaos(args.minutes * 60, seed, home).run()
    finally:
        if args.keep or code != 0:
            print(f"home kept for inspection: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
