"""What a supervisor is given to start a run: plain data, so it can be sent through a pipe to
a supervisor forked in advance (engine/spawn.py's Spare)."""

from __future__ import annotations

from dataclasses import dataclass

from hermes_cron.contract.procinfo import ProcId
from hermes_cron.logic.hermes import SKIP_EXIT
from hermes_cron.logic.jobs import Job
from hermes_cron.store.runfiles import RunFiles


@dataclass(frozen=True)
class Target:
    """An earlier run that a `replace` run stops before it starts."""

    run_id: int
    folder: str
    supervisor: ProcId | None
    kill_grace: float

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.folder)


@dataclass(frozen=True)
class Launch:
    """Everything a supervisor needs to start one run: plain data, so it can be sent to a
    supervisor forked in advance (see Spare)."""

    run_id: int
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str | None
    timeout: float | None
    kill_grace: float
    output_cap: int
    scheduled: float | None
    folder: str
    home_root: str
    targets: tuple[Target, ...] = ()
    nofile: tuple[int, int] | None = None
    start_at: float | None = None  # not before this instant (the slot, when claimed ahead of it)
    skip_code: int | None = None  # an exit status that means "skipped" (a Hermes job's runner)
    lease_until: float | None = None  # shared store: stop the run at this time unless the lease file says later

    @classmethod
    def of(cls, run_id: int, job: Job, scheduled: float | None, folder: str, home_root: str,
           targets: tuple[Target, ...] = (), nofile: tuple[int, int] | None = None,
           start_at: float | None = None) -> Launch:
        return cls(run_id, job.name, tuple(job.argv), job.env, job.cwd, job.timeout, job.kill_grace,
                   job.output_cap, scheduled, folder, home_root, targets, nofile,
                   start_at=start_at if start_at is not None else scheduled,
                   skip_code=SKIP_EXIT if job.hermes is not None else None)

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.folder)

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["targets"] = [[t.run_id, t.folder, t.supervisor.pid if t.supervisor else None,
                         t.supervisor.start if t.supervisor else None, t.kill_grace] for t in self.targets]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Launch:
        d = dict(d)
        d["argv"] = tuple(d["argv"])
        d["env"] = tuple(tuple(kv) for kv in d["env"])
        d["nofile"] = tuple(d["nofile"]) if d["nofile"] else None
        d["targets"] = tuple(Target(r, f, ProcId(p, st) if p is not None else None, g)
                             for r, f, p, st, g in d["targets"])
        return cls(**d)
