"""Runs one Hermes job as Hermes's own execution. Run by hermes-cron's supervisor in the Hermes
agent's Python (`PYTHON -I hermes_fire.py fire HOME JOB_ID`), so it imports the standard
library and Hermes's own modules only, never hermes_cron.

`fire` takes the steps of Hermes's `CronScheduler.fire_due`: Hermes's claim
(`claim_job_for_fire`), its execution record (`create_execution`, source "hermes-cron"), then
`run_one_job` (the agent or script run, output, delivery, and Hermes's bookkeeping: repeat
counts, one-shot removal, `last_status`). Before claiming, and under Hermes's own jobs lock, it
checks that the slot hermes-cron claimed is still unfired: Hermes's `fire_due` claim moves
`next_run_at` without checking that the job is due, so a slot that `hermes cron tick` (or any
other ticker) already fired must be caught here. It is, by two facts read under the lock: the
job's `next_run_at` is still the one hermes-cron read when it claimed the slot, and Hermes has
no execution of the job claimed at or after the slot.

Exit status: 0 when Hermes recorded the run completed, 1 when it recorded it failed (its error
is the last line), 75 when nothing was fired (the last line says why, after "hermes-cron:
skipped: "), 3 when this Hermes doesn't have the interface the runner was written for.
A SIGTERM (hermes-cron's timeout or stop) ends the run through Hermes's own failure path, so
Hermes records it failed and clears its claim; `settle` does the same for a run whose process
was killed outright (its execution record and claim are closed, once, by the dead runner's pid).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime

SKIP_EXIT, FAILED_EXIT, INTERFACE_EXIT = 75, 1, 3
SKIP_LINE = "hermes-cron: skipped: "
EXPECT_ENV = "HERMES_CRON_HERMES_NEXT_RUN"
SOURCE = "hermes-cron"
NEEDED = {
    "cron.jobs": ("_jobs_lock", "get_job", "claim_job_for_fire", "mark_job_run"),
    "cron.executions": ("create_execution", "finish_execution", "list_executions"),
    "cron.scheduler": ("run_one_job",),
}


class Stopped(Exception):
    """hermes-cron stopped the run (its timeout, a stop request, a replacing run)."""


def _modules():
    import importlib

    found, missing = {}, []
    for module, names in NEEDED.items():
        try:
            mod = importlib.import_module(module)
        except Exception as e:  # ImportError, or Hermes failing to import at all
            missing.append(f"{module} ({type(e).__name__}: {e})")
            continue
        missing += [f"{module}.{n}" for n in names if not hasattr(mod, n)]
        found[module] = mod
    if missing:
        print(f"hermes-cron: this Hermes agent lacks the cron interface hermes-cron uses: {', '.join(missing)} "
              "(tested with hermes-agent 0.19)", file=sys.stderr)
        sys.exit(INTERFACE_EXIT)
    return found["cron.jobs"], found["cron.executions"], found["cron.scheduler"]


def _epoch(value) -> float | None:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def _skip(why: str) -> int:
    print(SKIP_LINE + why, flush=True)
    return SKIP_EXIT


def fire(job_id: str, slot: float | None, expect: str | None) -> int:
    jobs, executions, scheduler = _modules()
    with jobs._jobs_lock():
        job = jobs.get_job(job_id)
        if job is None:
            return _skip("the job is no longer in Hermes's jobs.json")
        if not job.get("enabled", True) or job.get("state") == "paused":
            return _skip("the job is paused in Hermes")
        if expect is not None and (job.get("next_run_at") or "") != expect:
            return _skip(f"Hermes's next run moved from {expect or 'none'} to {job.get('next_run_at') or 'none'} "
                         "since this slot was claimed: fired by another ticker, or edited")
        if slot is not None:
            for e in executions.list_executions(job_id=job_id, limit=10):
                at = _epoch(e.get("claimed_at"))
                if at is not None and at >= slot - 1.0:
                    return _skip(f"Hermes's execution {e.get('id')} ({e.get('source')}) already fired this slot")
        if not jobs.claim_job_for_fire(job_id):
            return _skip("Hermes's claim was taken by another ticker")
        execution = executions.create_execution(job_id, source=SOURCE)
        job = jobs.get_job(job_id)
    if job is None:
        executions.finish_execution(execution["id"], success=False, error="job removed before it ran")
        return _skip("the job was removed from Hermes's jobs.json before it ran")
    job["execution_id"] = execution["id"]
    print(f"hermes-cron: firing Hermes job {job_id} ({job.get('name')}), execution {execution['id']}", flush=True)
    stopped = {}

    def on_term(signum, frame):
        if not stopped:
            stopped["at"] = time.time()
            raise Stopped("stopped by hermes-cron (its timeout or a stop request) before the run finished")

    signal.signal(signal.SIGTERM, on_term)
    started = time.time()
    try:
        scheduler.run_one_job(job)
    except Stopped as e:  # raised outside run_one_job's own handler: close the records here
        _close(jobs, executions, job_id, execution["id"], str(e))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _show_output(jobs, job_id, started)
    record = next((e for e in executions.list_executions(job_id=job_id, limit=20) if e["id"] == execution["id"]),
                  None)
    status = record.get("status") if record else None
    if status == "completed":
        return 0
    if status in ("claimed", "running"):
        _close(jobs, executions, job_id, execution["id"], "the run ended without Hermes recording its end")
    print(f"hermes-cron: Hermes recorded the run {status or 'missing'}: {(record or {}).get('error') or ''}".rstrip(),
          flush=True)
    return FAILED_EXIT


def _close(jobs, executions, job_id: str, execution_id: str, reason: str) -> None:
    """Hermes's own failure bookkeeping for a run that ended without it: the execution record
    failed (if still open) and the job marked run with an error, which clears its claims."""
    if executions.finish_execution(execution_id, success=False, error=reason) is not None:
        jobs.mark_job_run(job_id, False, reason)


def _show_output(jobs, job_id: str, since: float) -> None:
    """Copy what Hermes saved as the run's output to our output, so `hermes-cron logs` shows it."""
    try:
        folder = jobs.get_cron_output_dir() / job_id if hasattr(jobs, "get_cron_output_dir") else None
        if folder is None or not folder.is_dir():
            return
        newest = max((p for p in folder.iterdir() if p.is_file() and not p.is_symlink()),
                     key=lambda p: p.stat().st_mtime, default=None)
        if newest is not None and newest.stat().st_mtime >= since - 1:
            print(f"--- Hermes's output: {newest}", flush=True)
            with open(newest, "rb") as f:
                sys.stdout.buffer.write(f.read(1 << 20))
            sys.stdout.buffer.write(b"\n")
            sys.stdout.flush()
    except OSError:
        pass


def settle(job_id: str, pid: int, reason: str) -> int:
    """Close the Hermes records a killed runner (`pid`) left open: its execution failed, and the
    job marked run with `reason` (clearing its fire claim), under Hermes's lock; a no-op when
    the runner closed them itself."""
    jobs, executions, _ = _modules()
    with jobs._jobs_lock():
        open_ones = [e for e in executions.list_executions(job_id=job_id, limit=50)
                     if e.get("pid") == pid and e.get("source") == SOURCE and e.get("status") in ("claimed", "running")]
        for e in open_ones:
            _close(jobs, executions, job_id, e["id"], reason)
    print(f"hermes-cron: settled {len(open_ones)} Hermes execution(s) of job {job_id}", flush=True)
    return 0


def check() -> int:
    """Whether this Hermes has the interface: exit 0 naming its version, else 3 naming what lacks."""
    _modules()
    try:
        from importlib.metadata import version

        found = version("hermes-agent")
    except Exception:
        found = "unknown version"
    print(f"hermes-agent {found}, cron interface as expected", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[1] == "check":
        os.environ["HERMES_HOME"] = argv[2]
        return check()
    if len(argv) < 4 or argv[1] not in ("fire", "settle"):
        print("usage: hermes_fire.py fire HOME JOB_ID | settle HOME JOB_ID PID REASON", file=sys.stderr)
        return 2
    os.environ["HERMES_HOME"] = argv[2]
    if argv[1] == "settle":
        return settle(argv[3], int(argv[4]), argv[5] if len(argv) > 5 else "killed")
    raw_slot = os.environ.get("HERMES_CRON_SCHEDULED") or ""
    slot = float(raw_slot) if raw_slot else None
    expect = os.environ.get(EXPECT_ENV) if EXPECT_ENV in os.environ else None
    return fire(argv[3], slot, expect)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
