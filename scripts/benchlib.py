"""Shared pieces of the benchmarks: a job that stamps its own start time, a daemon to measure,
homes filled with many jobs, and percentiles. Not imported by hermes-cron itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

STAMP_C = r"""
#include <stdio.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <string.h>
int main(int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[128];
    const char *tag = argc > 2 ? argv[2] : "-";
    int n = snprintf(line, sizeof line, "%lld.%09ld %s\n", (long long)ts.tv_sec, ts.tv_nsec, tag);
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0) return 1;
    write(fd, line, n);
    return 0;
}
"""


# The same, stamped at the program's first instruction, without a C library (x86-64 Linux). A
# C-library program runs its library's start-up before main(): here, under KVM, that is ~0.25 ms
# of CPU, mostly CPUID instructions (~5 us each in this guest, trapped to the hypervisor) in
# glibc's CPU-feature set-up. In a burst the jobs share the cores, so each job's start-up delays
# the stamps of the jobs after it: 1,000 jobs on 2 cores, ~210-270 ms to the last main() against
# ~75 ms to the last first instruction, the scheduler's work being the same. The bare stamp
# measures when the scheduler started the job; the C-library one adds the jobs' own start-up.
STAMP_BARE_C = r"""
typedef long i64;
struct ts { i64 sec, nsec; };
static i64 sys3(i64 n, i64 a, i64 b, i64 c) {
    i64 r;
    __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
static int digits(char *p, i64 v, int width) {
    char t[24]; int n = 0;
    do { t[n++] = '0' + v % 10; v /= 10; } while (v || n < width);
    for (int i = 0; i < n; i++) p[i] = t[n - 1 - i];
    return n;
}
__attribute__((force_align_arg_pointer, noreturn)) void stamp_start(i64 *sp) {
    struct ts now;
    sys3(228, 0, (i64)&now, 0);  /* clock_gettime(CLOCK_REALTIME): the first thing it does */
    int argc = (int)sp[0]; char **argv = (char **)(sp + 1);
    char line[96]; int n = digits(line, now.sec, 1);
    line[n++] = '.'; n += digits(line + n, now.nsec, 9); line[n++] = ' ';
    const char *tag = argc > 2 ? argv[2] : "-";
    while (*tag && n < 94) line[n++] = *tag++;
    line[n++] = '\n';
    i64 fd = argc > 1 ? sys3(2, (i64)argv[1], 02000 | 01 | 0100, 0600) : -1;  /* O_APPEND|O_WRONLY|O_CREAT */
    if (fd >= 0) sys3(1, fd, (i64)line, n);
    sys3(231, fd >= 0 ? 0 : 1, 0, 0);  /* exit_group */
    for (;;) {}
}
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n call stamp_start\n hlt\n");
"""
STAMP_KINDS = ("bare", "libc")
STAMP_ENV = "HERMES_CRON_BENCH_STAMP"  # bare (the default) or libc: which stamp the benches use


def stamp_kind() -> str:
    """The stamp the benches use: as $HERMES_CRON_BENCH_STAMP says, but `libc` on a machine the
    bare stamp isn't written for (so a report's caption says the stamp its figures had)."""
    kind = os.environ.get(STAMP_ENV, "bare")
    if kind not in STAMP_KINDS:
        raise SystemExit(f"{STAMP_ENV}={kind!r}: one of {', '.join(STAMP_KINDS)}")
    return "libc" if kind == "bare" and os.uname().machine != "x86_64" else kind


def stamp_program(workdir: str) -> list[str]:
    """A command that appends the instant it started (CLOCK_REALTIME) to a file: at its first
    instruction (`bare`, the default: see STAMP_BARE_C), or at main() (`libc`), as stamp_kind()
    says.

    Compiled from C when a compiler is at hand, so the measure is the job's own start, not an
    interpreter's start-up. Falls back to `python3 -S` (adds its start-up, ~10 ms)."""
    kind = stamp_kind()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        if kind == "bare":
            exe = os.path.join(workdir, "stamp-bare")
            src = exe + ".c"
            with open(src, "w") as f:
                f.write(STAMP_BARE_C)
            flags = ["-O2", "-static", "-nostdlib", "-fno-stack-protector", "-fno-builtin"]
            if subprocess.run([cc, *flags, "-o", exe, src], capture_output=True).returncode == 0:
                return [exe]
            print("note: the bare stamp did not compile; stamping at main() instead", file=sys.stderr)
        exe = os.path.join(workdir, "stamp-libc")
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(STAMP_C)
        if subprocess.run([cc, "-O2", "-static", "-o", exe, src], capture_output=True).returncode == 0 or \
                subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True).returncode == 0:
            return [exe]
    print("note: no C compiler; stamping with python3 -S adds its start-up time", file=sys.stderr)
    return [sys.executable, "-S", "-c",
            "import sys,time;open(sys.argv[1],'a').write('%.9f %s\\n'%(time.time(),sys.argv[2] if len(sys.argv)>2 else '-'))"]


def read_stamps(path: str) -> list[tuple[float, str]]:
    try:
        with open(path) as f:
            return [(float(t), tag) for t, tag in (line.split() for line in f if line.strip())]
    except FileNotFoundError:
        return []


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3) if ms else float("nan"),
            "p99_ms": round(percentile(ms, 0.99), 3), "max_ms": round(max(ms), 3) if ms else float("nan")}


def new_home(prefix: str = "hermes-bench-") -> str:
    return tempfile.mkdtemp(prefix=prefix)


def cli(home: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "hermes_cron", "--home", home, *args],
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"hermes-cron {' '.join(args)}: {proc.stderr}")
    return proc


def write_jobs(home: str, jobs: list[dict[str, Any]]) -> None:
    """Write many jobs at once through the library (one store write, one reconcile)."""
    from hermes_cron.store import jobstore
    from hermes_cron.logic.jobs import Job
    from hermes_cron.contract.paths import Home
    from hermes_cron.app.jobs import sync_schedule
    from hermes_cron.store.sqlite import SqliteStore

    h = Home(home)
    now = time.time()
    built = [Job(tz="UTC", created=now, anchor=float(int(now)), **spec) for spec in jobs]

    def change(current: dict) -> None:
        current.update({j.name: j for j in built})

    store = SqliteStore(h)
    try:
        jobstore.mutate(h, change, lambda defs: sync_schedule(store, defs, now))
    finally:
        store.close()


class Daemon:
    """`hermes-cron run` in the background, for measuring."""

    def __init__(self, home: str, *args: str, env: dict[str, str] | None = None, python: str | None = None):
        self.home = home
        self.log = os.path.join(home, "bench-daemon.log")
        self.proc = subprocess.Popen(
            [python or sys.executable, "-m", "hermes_cron", "--home", home, "run", "--log-format", "json",
             "--log-file", self.log, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        hb = os.path.join(home, "cron", ".ticker_heartbeat")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if json.load(open(hb)).get("pid") == self.proc.pid:
                    return
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon died: {self.proc.stderr.read().decode()}")
            time.sleep(0.02)
        raise RuntimeError("daemon never wrote a heartbeat")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str) -> list[dict]:
        out = []
        try:
            with open(self.log) as f:
                for line in f:
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if e.get("event") == name:
                        out.append(e)
        except FileNotFoundError:
            pass
        return out

    def rss_mb(self, kind: str = "VmRSS") -> float:
        """Resident memory in MB: all of it (VmRSS), or its anonymous part (RssAnon: the heap,
        Python's objects) or its file-backed part (RssFile: the interpreter and libraries mapped,
        as many of their pages as the process touched or the kernel mapped around a fault from
        the page cache, so it moves with what other processes left cached)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(kind + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def children_private_mb(self) -> float:
        """The private memory (USS: pages no other process shares) of the daemon's children: the
        spare supervisor, when idle. Shared pages are counted once, in the daemon's RSS."""
        import psutil

        total = 0
        for child in psutil.Process(self.pid).children():
            try:
                total += child.memory_full_info().uss
            except psutil.Error:
                pass
        return total / 2**20

    def cpu_s(self) -> float:
        """CPU time so far, in seconds, to the nanosecond (schedstat), not to the clock tick."""
        with open(f"/proc/{self.pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9

    def wakeups(self) -> int:
        """Context switches so far (voluntary + involuntary): each wake-up costs at least one."""
        n = 0
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    n += int(line.split()[1])
        return n

    def watch_sleeps(self, seconds: float) -> int | None:
        """Wait `seconds`, counting the daemon's wake-ups meanwhile: the times its main thread
        went to sleep in its loop (epoll_wait; each sleep ends in one wake-up), counted by the
        kernel through perf. Context switches count more than wake-ups: a tick that waits on the
        disk (the heartbeat's rename does, on ext4) switches again without having slept. None if
        perf can't count them here (it is then a plain wait)."""
        out = os.path.join(self.home, "perf.out")
        try:
            r = subprocess.run(["perf", "stat", "-x", ",", "-o", out, "-e", "syscalls:sys_enter_epoll_wait",
                                "-t", str(self.pid), "--", "sleep", str(seconds)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            r = None
        if r is None or r.returncode != 0:
            time.sleep(seconds)
            return None
        with open(out) as f:
            for line in f:
                fields = line.split(",")
                if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_epoll_wait"):
                    return int(fields[0]) if fields[0].isdigit() else None
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def kill_runs(home: str) -> None:
    """Kill the process group of every run's job. A run's job.pid is made empty before its slot
    (engine/jobrun.py) and written once the job runs: an empty one has nothing to kill yet."""
    for dirpath, _, files in os.walk(os.path.join(home, "cron", "runs")):
        if "job.pid" in files:
            try:
                fields = open(os.path.join(dirpath, "job.pid")).read().split()
                if fields:
                    os.killpg(int(fields[0]), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def next_second_boundary(margin: float) -> float:
    """A whole second at least `margin` seconds ahead."""
    return float(int(time.time() + margin) + 1)


def start_burst(home: str, n: int, *daemon_args: str) -> tuple[Daemon, float, str]:
    """A daemon on `home` and N one-shot jobs due in the same second a few seconds ahead, each
    stamping its start into the returned file; returns (the daemon, that second, the file)."""
    stamp = stamp_program(home)
    out = os.path.join(home, "stamps")
    d = Daemon(home, "--tick-interval", "60", *daemon_args)
    at = next_second_boundary(4.0)
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    write_jobs(home, [{"name": f"burst-{i:05d}", "command": (*stamp, out, str(i)), "schedule": f"at {iso}"}
                      for i in range(n)])
    cli(home, "list", "--json")  # nudges nothing, but makes sure the store is readable
    os.kill(d.pid, signal.SIGUSR1)  # pick up the new jobs now, as an edit would
    return d, at, out
