"""A fake of engine/system.py for the quick engine tests: no process is forked, signalled or
waited for. The test plays each supervisor through FakeSystem's methods, writing the run-folder
files a real supervisor writes (the run folders are real files in the test's home: they are
the store's contract, not the OS boundary)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.engine.launch import Launch
from hermes_cron.logic.run import Outcome, RunResult
from hermes_cron.store.runfiles import JOB_PID, RESULT, RunFiles, supervisor_token


@dataclass
class FakeSupervisor:
    pid: int
    launches: list[Launch]
    notify_fd: int | None
    jobs: dict[int, ProcId] = field(default_factory=dict)  # run id -> its job


class FakeSpare:
    def __init__(self, system: FakeSystem, notify_fd: int | None):
        self.system = system
        self.notify_fd = notify_fd
        self.pid = system._new_pid()
        system.live.add(self.pid)
        self.dismissed = False

    def assign(self, launches: list[Launch]) -> int:
        self.system.supervisors[self.pid] = FakeSupervisor(self.pid, launches, self.notify_fd)
        return self.pid

    def dismiss(self) -> None:
        self.dismissed = True
        self.system.exit(self.pid)


class FakeSystem:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now
        self.live: set[int] = set()
        self.exited: list[int] = []  # waiting to be reaped
        self.supervisors: dict[int, FakeSupervisor] = {}
        self.signals: list[tuple[int, int]] = []  # (process group, signal)
        self.started: dict[int, float] = {}  # pid -> start time (wall)
        self._pid = 40_000

    # engine/system.py's interface -------------------------------------------------------

    def time(self) -> float:
        return self.now

    def spawn(self, launches: list[Launch], notify_fd: int | None, detach: bool) -> int:
        pid = self._new_pid()
        self.live.add(pid)
        self.supervisors[pid] = FakeSupervisor(pid, launches, notify_fd)
        return pid

    def spare(self, notify_fd: int | None) -> FakeSpare:
        return FakeSpare(self, notify_fd)

    def reap(self) -> int | None:
        return self.exited.pop(0) if self.exited else 0

    def wait_child(self, pid: int = -1) -> int | None:
        if pid != -1:
            if pid in self.exited:
                self.exited.remove(pid)
            return pid
        return self.exited.pop(0) if self.exited else None

    def proc(self, pid: int) -> ProcId | None:
        return ProcId(pid, 1) if pid in self.live else None

    def alive(self, proc: ProcId | None) -> bool:
        return proc is not None and proc.pid in self.live

    def started_at(self, proc: ProcId) -> float:
        return self.started[proc.pid]

    def pidfd(self, pid: int) -> int | None:
        return 100_000 + pid if pid in self.live else None

    def close(self, fd: int) -> None:
        pass

    def killpg(self, pgid: int, sig: int) -> None:
        self.signals.append((pgid, sig))

    # playing the supervisors ------------------------------------------------------------

    def _new_pid(self) -> int:
        self._pid += 1
        return self._pid

    def supervisor_of(self, run_id: int) -> FakeSupervisor:
        return next(s for s in self.supervisors.values() if any(x.run_id == run_id for x in s.launches))

    def start(self, run_id: int) -> ProcId | None:
        """The supervisor takes the run's token and starts its job; None if the token was taken."""
        sup = self.supervisor_of(run_id)
        launch = next(x for x in sup.launches if x.run_id == run_id)
        files = RunFiles(launch.folder)
        if not files.take_token(supervisor_token(run_id, ProcId(sup.pid, 1))):
            return None
        job = ProcId(self._new_pid(), 1)
        self.live.add(job.pid)
        self.started[job.pid] = self.now
        sup.jobs[run_id] = job
        files.write(JOB_PID, f"{job.pid} 1 {self.now!r}\n".encode())
        return job

    def end(self, run_id: int, outcome: Outcome = Outcome.SUCCEEDED, exit_code: int | None = 0) -> None:
        """The run's job exits and its supervisor writes the result."""
        sup = self.supervisor_of(run_id)
        launch = next(x for x in sup.launches if x.run_id == run_id)
        job = sup.jobs[run_id]
        self.live.discard(job.pid)
        result = RunResult(outcome, self.now, self.started[job.pid], exit_code, None, None, job.pid, 1,
                           RunFiles(launch.folder).output, 0)
        RunFiles(launch.folder).write(RESULT, result.to_json())

    def exit(self, pid: int) -> None:
        """A process exits (a supervisor: it is reaped next)."""
        self.live.discard(pid)
        if pid not in self.exited:
            self.exited.append(pid)

    def killed(self, pid: int) -> list[int]:
        return [sig for pgid, sig in self.signals if pgid == pid]


TERM, KILL = signal.SIGTERM, signal.SIGKILL
