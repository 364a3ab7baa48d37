"""Asking a run to stop: a `stop` file with the reason, then SIGTERM to its supervisor (or,
with none, to its job's process group); and waiting for an earlier run a `replace` run stops."""

from __future__ import annotations

import os
import signal
import time

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.engine.launch import Target
from hermes_cron.errors import HomeError
from hermes_cron.store.runfiles import RESULT, STOP, RunFiles


def killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def request_stop(files: RunFiles, supervisor: ProcId | None, job: ProcId | None, reason: str) -> bool:
    """Ask a run to stop: write the reason, then TERM its supervisor (or, without one, its job's
    process group). Returns False if there was nothing alive to signal."""
    try:
        files.write(STOP, (reason + "\n").encode())
    except (OSError, HomeError):
        pass
    if supervisor is not None and supervisor.alive():
        os.kill(supervisor.pid, signal.SIGTERM)
        return True
    if job is not None and job.alive():
        killpg(job.pid, signal.SIGTERM)
        return True
    return False


def stop_target(target: Target, reason: str) -> None:
    """Stop an earlier run and wait until it is gone (bounded by its kill grace)."""
    job = target.files.read_job_pid()
    if not request_stop(target.files, target.supervisor, job, reason):
        return
    deadline = time.monotonic() + target.kill_grace + 5.0
    escalated = False
    while time.monotonic() < deadline:
        job_alive = job is not None and job.alive()
        supervisor_busy = target.supervisor is not None and target.supervisor.alive() and \
            not target.files.has(RESULT)
        if not supervisor_busy and not job_alive:
            return
        if not supervisor_busy and job_alive and not escalated and time.monotonic() > deadline - 5.0:
            killpg(job.pid, signal.SIGKILL)  # no supervisor left to escalate for us
            escalated = True
        time.sleep(0.02)
