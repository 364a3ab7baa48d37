#!/usr/bin/env python3
"""The idle daemon's RSS, wake-ups and CPU over 60 s, without and then with `hermes-cron serve`
running beside it and scraped every 5 s: serving must add nothing to the daemon (it is a process
of its own that reads the store and the heartbeat).

    .venv/bin/python scripts/bench_serve.py
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psutil


def main() -> int:
    root = tempfile.mkdtemp(prefix="bench-serve-")
    home = os.path.join(root, "hermes")
    env = {**os.environ, "HERMES_HOME": home}
    env.pop("HERMES_CRON_STORE", None)
    me = [sys.executable, "-m", "hermes_cron"]
    for i in range(5):
        subprocess.run(me + ["add", f"daily-{i}", "-s", f"0 {i} * * *", "--", "true"], env=env, check=True,
                       capture_output=True)
    daemon = subprocess.Popen(me + ["run", "--log-file", os.path.join(root, "daemon.log")], env=env)
    server = None
    try:
        time.sleep(3)
        p = psutil.Process(daemon.pid)

        def window(label: str) -> None:
            c0, t0 = p.num_ctx_switches().voluntary, p.cpu_times()
            time.sleep(60)
            c1, t1 = p.num_ctx_switches().voluntary, p.cpu_times()
            cpu = (t1.user + t1.system - t0.user - t0.system) * 1000
            print(f"{label:<32} daemon RSS {p.memory_info().rss / 2**20:.1f} MB, {c1 - c0} wake-up(s), "
                  f"{cpu:.1f} ms CPU in 60 s")

        window("without serve")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(me + ["serve", "--listen", f"127.0.0.1:{port}"], env=env, stderr=subprocess.DEVNULL)
        stop = threading.Event()

        def scrape() -> None:
            while not stop.wait(5):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                except OSError as e:
                    print("scrape failed:", e)

        time.sleep(2)
        threading.Thread(target=scrape, daemon=True).start()
        window("with serve, scraped every 5 s")
        stop.set()
        print(f"{'serve itself':<32} RSS {psutil.Process(server.pid).memory_info().rss / 2**20:.1f} MB")
    finally:
        for proc in (server, daemon):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
