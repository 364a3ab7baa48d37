"""The peers, measured by the same method as hermes-cron: Debian's cron (installed with apt-get,
started by hand) and APScheduler 3 (in a scratch venv), each job spawning the same tiny
process that stamps its own start. Used by scripts/bench.py --peers; needs root for cron."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from benchlib import percentile, read_stamps, stamp_program, summary_ms

CRON_D = "/etc/cron.d/hermes-bench"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# Debian cron ---------------------------------------------------------------------------


def cron_available() -> str | None:
    """None if we can measure cron here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("cron") is None:
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "cron"], capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode != 0 or shutil.which("cron") is None:
            return f"apt-get install cron failed: {proc.stderr.strip()[-200:]}"
    if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode == 0:
        return "a cron daemon is already running on this machine"
    return None


def measure_cron(minutes: int, per_minute: int, burst: int) -> dict:
    """Fire latency over `minutes` minutes (`per_minute` entries each minute), idle RSS, and a
    burst of `burst` entries due in the same minute."""
    work = tempfile.mkdtemp(prefix="hermes-bench-cron-")
    cron = None
    try:
        stamp = stamp_program(work)
        out = os.path.join(work, "stamps")
        lines = [f"* * * * * root {' '.join(stamp)} {out} c{i}\n" for i in range(per_minute)]
        with open(CRON_D, "w") as f:
            f.write("".join(lines))
        cron = subprocess.Popen(["cron", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(3)
        rss = _rss_mb(cron.pid)
        _wait_minutes(minutes)
        latency = [t - int(t) for t, _ in read_stamps(out)]
        os.remove(out)
        with open(CRON_D, "w") as f:
            f.write("".join(f"* * * * * root {' '.join(stamp)} {out} b{i}\n" for i in range(burst)))
        _wait_minutes(1)
        bstamps = sorted(t for t, _ in read_stamps(out))
        boundary = float(int(bstamps[0])) if bstamps else float("nan")
        return {"latency": summary_ms(latency), "idle_rss_mb": round(rss, 1),
                "burst_last_ms": round((bstamps[-1] - boundary) * 1000, 1) if bstamps else None,
                "burst_started": len(bstamps)}
    finally:
        if cron is not None:
            cron.send_signal(signal.SIGTERM)
            cron.wait(10)
        try:
            os.remove(CRON_D)
        except FileNotFoundError:
            pass
        shutil.rmtree(work, ignore_errors=True)


def _wait_minutes(n: int) -> None:
    """Sleep past `n` whole-minute boundaries, plus a few seconds for the runs to land."""
    end = (time.time() // 60 + n) * 60 + 5
    time.sleep(max(0.0, end - time.time()))


# APScheduler 3 -------------------------------------------------------------------------

APS_SCRIPT = textwrap.dedent("""
    import subprocess, sys, time
    from datetime import datetime, timezone
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger

    mode, out, stamp = sys.argv[1], sys.argv[2], sys.argv[3:]

    def fire(tag):
        subprocess.Popen([*stamp, out, tag])

    sched = BlockingScheduler(timezone="UTC")
    if mode == "latency":
        sched.add_job(fire, CronTrigger(second="*", timezone="UTC"), args=["a"], misfire_grace_time=5)
    elif mode == "idle":
        for i in range(5):
            sched.add_job(fire, CronTrigger(hour=i, minute=0, timezone="UTC"), args=[f"d{i}"])
    else:  # a burst: mode is the instant, out is "FILE:COUNT"
        at = datetime.fromtimestamp(float(mode), timezone.utc)
        out, n = out.rsplit(":", 1)
        for i in range(int(n)):
            sched.add_job(fire, DateTrigger(run_date=at), args=[f"b{i}"], misfire_grace_time=30)
    sched.start()
""")


def aps_available(venv: str) -> str | None:
    proc = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"venv failed: {proc.stderr[-200:]}"
    proc = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "apscheduler>=3,<4"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return f"pip install apscheduler<4 failed: {proc.stderr[-200:]}"
    return None


def measure_apscheduler(venv: str, firings: int, burst: int) -> dict:
    work = tempfile.mkdtemp(prefix="hermes-bench-aps-")
    python = os.path.join(venv, "bin", "python")
    script = os.path.join(work, "aps.py")
    with open(script, "w") as f:
        f.write(APS_SCRIPT)
    try:
        stamp = stamp_program(work)
        out = os.path.join(work, "stamps")
        p = subprocess.Popen([python, script, "latency", out, *stamp])
        deadline = time.time() + firings + 10
        while len(read_stamps(out)) < firings + 1 and time.time() < deadline:
            time.sleep(0.5)
        p.terminate()
        p.wait()
        latency = [t - int(t) for t, _ in read_stamps(out)[1:firings + 1]]
        p = subprocess.Popen([python, script, "idle", out, *stamp])
        time.sleep(8)
        rss = _rss_mb(p.pid)
        p.terminate()
        p.wait()
        os.remove(out)
        at = float(int(time.time() + 6))
        p = subprocess.Popen([python, script, repr(at), f"{out}:{burst}", *stamp])
        deadline = time.time() + 60
        while len(read_stamps(out)) < burst and time.time() < deadline:
            time.sleep(0.05)
        p.terminate()
        p.wait()
        starts = sorted(t for t, _ in read_stamps(out))
        return {"latency": summary_ms(latency), "idle_rss_mb": round(rss, 1),
                "burst_last_ms": round((starts[-1] - at) * 1000, 1) if starts else None,
                "burst_started": len(starts)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["aps_available", "cron_available", "measure_apscheduler", "measure_cron", "percentile"]
