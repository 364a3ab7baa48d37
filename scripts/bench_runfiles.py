#!/usr/bin/env python3
"""The file work a supervisor does to start one run: make the run's folder, take its start
token, open its output and write job.pid. Prints microseconds per run.

    .venv/bin/python scripts/bench_runfiles.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from hermes_cron.contract.files import open_private
from hermes_cron.contract.paths import Home
from hermes_cron.store.runfiles import RunFiles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hermes-cron-bench-")
    try:
        home = Home(os.path.join(work, "hermes"))
        home.ensure()
        t0 = time.perf_counter()
        for run_id in range(1, args.runs + 1):
            files = RunFiles(home.run_dir("job", run_id))
            folder = files.open(create=True)
            try:
                files.take_token('{"run_id": %d}' % run_id, folder)
                os.close(open_private(folder, "output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
                files.write("job.pid", b"1 2\n", folder)
            finally:
                os.close(folder)
        took = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"| run files per start ({args.runs} runs) | {took / args.runs * 1e6:.1f} us |")


if __name__ == "__main__":
    main()
