"""A run's folder, `$HERMES_HOME/cron/runs/JOB/RUNID/`: the protocol between the process that
claims a run, the supervisor that starts it, and whoever records it.

- `start`: the start token, created exclusively (O_EXCL) by the one process that starts (or
  abandons, or cancels) the run, so a run is never started twice, whoever else tries;
- `job.pid`: the job's pid, its start time (clock ticks since boot) and when it started;
- `output.log`: stdout and stderr, capped (head and tail kept, a marker between them);
- `stop`: a request to stop the run, with its reason (the supervisor gets SIGTERM too);
- `result.json`: the outcome (logic/run.py's RunResult), written atomically when the run is over;
- `crash.txt`: the traceback of a supervisor that crashed;
- `lease` (shared store only): the time, on this host's clock, past which the supervisor stops
  the run unless the daemon renewed its lease (engine/cluster.py).

Every file is opened relative to the folder's descriptor without following symlinks, and the
folder is reached from `cron/` the same way (files.open_dir): a symlink anywhere from `cron/`
down is refused, never followed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from hermes_cron.contract.files import open_dir, open_private, read_small
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.errors import UnsafeHome
from hermes_cron.logic.jsondata import json_object
from hermes_cron.logic.run import RunResult
from hermes_cron.logic.settle import Token, read_token

RUN_DEPTH = 4  # cron/runs/JOB/RUNID: the folders of ours on the way to a run's files
TOKEN = "start"
JOB_PID = "job.pid"
OUTPUT = "output.log"
STOP = "stop"
RESULT = "result.json"
CRASH = "crash.txt"
LEASE = "lease"  # shared store: when (this host's clock) the run must stop unless its lease is renewed


@dataclass(frozen=True)
class RunFiles:
    """A run's folder and the files in it: its start token, output, pid, result, stop request."""

    folder: str

    @property
    def output(self) -> str:
        return os.path.join(self.folder, OUTPUT)

    def open(self, create: bool = False) -> int:
        """The folder's descriptor (made, with the job's folder, if `create`)."""
        return open_dir(self.folder, RUN_DEPTH, create=create)

    def unsafe(self) -> str | None:
        """Why the folder can't be used safely (a symlink, someone else's), or None."""
        try:
            os.close(self.open())
        except UnsafeHome as e:
            return str(e)
        except OSError:
            return None
        return None

    def read(self, name: str) -> bytes | None:
        """The bytes of one of the run's files; None if missing or unsafe."""
        return read_small(os.path.join(self.folder, name), RUN_DEPTH)

    def tail(self, size: int = 4096) -> str:
        """The last `size` bytes of the output, as text ('' if missing or unsafe); never follows a symlink."""
        try:
            dfd = self.open()
        except (OSError, UnsafeHome):
            return ""
        try:
            fd = os.open(OUTPUT, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError:
            return ""
        finally:
            os.close(dfd)
        try:
            end = os.fstat(fd).st_size
            return os.pread(fd, size, max(0, end - size)).decode("utf-8", "replace")
        except OSError:
            return ""
        finally:
            os.close(fd)

    def has(self, name: str) -> bool:
        return self.read(name) is not None

    def read_result(self) -> RunResult | None:
        return RunResult.from_json(self.read(RESULT))

    def read_token(self) -> tuple[Token, str]:
        """What the start token says, and who took it (see logic/settle.py)."""
        raw = self.read(TOKEN)
        return read_token(json_object(raw), raw is not None)

    def read_supervisor(self) -> ProcId | None:
        """The supervisor that took the start token, if one did."""
        raw = self.read(TOKEN)
        try:
            token = json.loads(raw or b"{}")
            if "supervisor_pid" in token:
                return ProcId(int(token["supervisor_pid"]), int(token["supervisor_start"]))
            return ProcId(int(token["reaper_pid"]), int(token["reaper_start"]))  # written before 0.2
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def read_job(self) -> tuple[ProcId, float | None] | None:
        """The job's process, and when it started, as its supervisor wrote them."""
        raw = self.read(JOB_PID)
        try:
            fields = (raw or b"").split()
            started = float(fields[2]) if len(fields) > 2 else None
            return ProcId(int(fields[0]), int(fields[1])), started
        except (ValueError, IndexError):
            return None

    def read_job_pid(self) -> ProcId | None:
        found = self.read_job()
        return found[0] if found else None

    def take_token(self, content: dict | str, dir_fd: int | None = None) -> bool:
        """Create the start token; False if some process already has it."""
        dfd = self.open(create=True) if dir_fd is None else dir_fd
        try:
            fd = open_private(dfd, TOKEN, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return False
        finally:
            if dir_fd is None:
                os.close(dfd)
        try:
            os.write(fd, (content if isinstance(content, str) else json.dumps(content)).encode())
        finally:
            os.close(fd)
        return True

    def write(self, name: str, data: bytes, dir_fd: int | None = None) -> None:
        """Write (replace) a small file of the run, privately, without following a symlink."""
        dfd = self.open() if dir_fd is None else dir_fd
        try:
            fd = open_private(dfd, name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        finally:
            if dir_fd is None:
                os.close(dfd)


def supervisor_token(run_id: int, me: ProcId) -> str:
    """The start token a supervisor takes to start a run."""
    return json.dumps({"run_id": run_id, "supervisor_pid": me.pid, "supervisor_start": me.start})
