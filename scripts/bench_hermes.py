#!/usr/bin/env python3
"""How late a Hermes agent job starts when hermes-cron fires it: from the slot to Hermes's own
claim of it (its execution record's claimed_at), and to its end, over N slots of a job made with
`hermes cron create` that runs every 5 s.

    python3 scripts/bench_hermes.py --hermes-bin /path/to/hermes-venv/bin [--slots 12]

Needs hermes-agent (0.19) installed in its own venv: --hermes-bin is that venv's bin folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hermes-bin", required=True)
    ap.add_argument("--slots", type=int, default=12)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-hermes-")
    home = os.path.join(root, "hermes")
    env = {**os.environ, "HERMES_HOME": home, "NO_COLOR": "1"}
    os.makedirs(os.path.join(home, "scripts"))
    with open(os.path.join(home, "scripts", "s.sh"), "w") as f:
        f.write("#!/bin/sh\necho ok\n")
    os.chmod(os.path.join(home, "scripts", "s.sh"), 0o755)
    hermes = os.path.join(a.hermes_bin, "hermes")
    subprocess.run([hermes, "cron", "create", "--name", "b", "--deliver", "local", "--script", "s.sh", "--no-agent",
                    "* * * * * */5"], env=env, check=True, capture_output=True)
    job_id = json.load(open(os.path.join(home, "cron", "jobs.json")))["jobs"][0]["id"]
    me = [sys.executable, "-m", "hermes_cron"]
    subprocess.run(me + ["hermes", "enable", "--python", os.path.join(a.hermes_bin, "python")], env=env, check=True,
                   capture_output=True)
    subprocess.run(me + ["start"], env=env, check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 5 * a.slots + 30
        rows: list = []
        while time.monotonic() < deadline:
            time.sleep(1)
            out = subprocess.run([os.path.join(a.hermes_bin, "python"), "-c",
                                  "import json\nfrom cron.executions import list_executions\n"
                                  f"print(json.dumps(list_executions(job_id={job_id!r}, limit=500)))"],
                                 env=env, capture_output=True, text=True).stdout
            rows = [r for r in json.loads(out.splitlines()[-1]) if r["status"] == "completed"]
            if len(rows) >= a.slots:
                break
    finally:
        subprocess.run(me + ["stop"], env=env, capture_output=True)

    def ts(s: str) -> float:
        return datetime.fromisoformat(s).timestamp()

    late = sorted((ts(r["claimed_at"]) % 5) * 1000 for r in rows)
    total = sorted((ts(r["finished_at"]) - ts(r["claimed_at"]) + ts(r["claimed_at"]) % 5) * 1000 for r in rows)
    print(f"{len(rows)} slots of a Hermes script job fired by hermes-cron (hermes-agent in {a.hermes_bin})")
    print(f"slot -> Hermes's claim: median {statistics.median(late):.0f} ms, worst {late[-1]:.0f} ms")
    print(f"slot -> Hermes's run recorded completed: median {statistics.median(total):.0f} ms, worst {total[-1]:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
