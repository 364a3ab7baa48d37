"""The Hermes agent's own jobs, as hermes-cron schedules them. Pure code: a Hermes job record
(an entry of Hermes's `cron/jobs.json`) in, a `Job` of ours (or why not) out.

How Hermes means its schedules, and how each kind maps:
- `{"kind": "cron", "expr": E}`: E as croniter reads it. croniter puts a sixth field, seconds,
  LAST (`*/5 * * * * */10` is every 10 s of every fifth minute) and a seventh, the year, after
  it; our expressions put seconds first, so a six-field expression is turned round. A year
  field other than `*` can't be scheduled here and is reported.
- `{"kind": "interval", "minutes": M}`: `every Mm`, anchored at the job's `created_at`. Hermes
  itself re-anchors an interval at each run's completion (the next run is M minutes after the
  last one ended, so its slots drift by the runs' durations); under hermes-cron the slots stay
  on the grid created_at + k*M, like every interval of ours.
- `{"kind": "once", "run_at": T}`: `at T`, fired if its time is at most Hermes's one-shot grace
  (120 s) in the past, never again once it ran (`last_run_at` set).
The zone is Hermes's: `HERMES_TIMEZONE`, else `timezone` in its config.yaml, else the machine's.
The misfire grace is Hermes's rule: half the period, clamped to 120 s..2 h (120 s for a one-shot).
A job that is not `enabled` or whose state is paused is kept, disabled (`hermes cron resume`
brings it back from its next slot on); completed and error jobs are not scheduled at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any

from hermes_cron.errors import InvalidInput
from hermes_cron.logic.jobs import Job

PREFIX = "hermes."  # our name of the Hermes job with id X is `hermes.X`; native names can't take it
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,56}$")
MIN_GRACE, MAX_GRACE, ONESHOT_GRACE = 120.0, 7200.0, 120.0
SKIP_EXIT = 75  # the runner's exit status for "not fired: another ticker has it" (EX_TEMPFAIL)
RUNNER_SAYS = "hermes-cron: "  # how the runner's lines for us begin ("skipped: why", or Hermes's failure)
EXPECT_ENV = "HERMES_CRON_HERMES_NEXT_RUN"  # Hermes's next_run_at when the slot was claimed
NOT_SCHEDULED = ("completed", "error")


def our_name(job_id: str) -> str:
    return PREFIX + job_id


def is_hermes_name(name: str) -> bool:
    return name.startswith(PREFIX)


@dataclass(frozen=True)
class Runner:
    """How a Hermes job is run: Hermes's Python, our runner script, the Hermes home."""

    python: str
    script: str
    home: str
    timeout: float | None = None  # hermes-cron's timeout for every Hermes run (`hermes enable --timeout`)

    def argv(self, job_id: str) -> tuple[str, ...]:
        # -I: isolated, so neither the working folder nor PYTHON* variables steer the imports.
        return (self.python, "-I", self.script, "fire", self.home, job_id)



def settle_argv(fire_argv: list[str], pid: int, reason: str) -> list[str] | None:
    """The runner's `settle` command for a run started with `fire_argv` (Runner.argv's shape), or
    None if that isn't a runner's command line."""
    if len(fire_argv) < 6 or fire_argv[3] != "fire":
        return None
    return [*fire_argv[:3], "settle", fire_argv[4], fire_argv[5], str(pid), reason[:500]]


def cron_text(expr: str) -> str:
    """A croniter expression as our parser reads it: seconds moved from last to first."""
    parts = expr.split()
    if len(parts) == 7:
        if parts[6] != "*":
            raise InvalidInput(f"cron expression {expr!r} names years ({parts[6]}); hermes-cron can't schedule "
                               "a year field")
        parts = parts[:6]
    if len(parts) == 6:
        parts = [parts[5], *parts[:5]]
    return " ".join(parts)


def grace(job: Job) -> float:
    """Hermes's misfire grace for the job: half its period, clamped to 120 s..2 h."""
    sched = job.compiled
    if sched.kind == "at":
        return ONESHOT_GRACE
    first = sched.next_after(job.created or 0.0)
    second = sched.next_after(first) if first is not None else None
    if first is None or second is None:
        return MIN_GRACE
    return max(MIN_GRACE, min((second - first) // 2, MAX_GRACE))


def schedule_of(record: dict[str, Any]) -> str:
    sched = record.get("schedule")
    if not isinstance(sched, dict):
        raise InvalidInput("its schedule is not an object")
    kind = sched.get("kind")
    if kind == "cron":
        expr = sched.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            raise InvalidInput("its cron schedule has no expression")
        return cron_text(expr)
    if kind == "interval":
        minutes = sched.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0:
            raise InvalidInput(f"its interval {minutes!r} is not a positive number of minutes")
        return f"every {minutes:g}m"
    if kind == "once":
        run_at = sched.get("run_at")
        if not isinstance(run_at, str):
            raise InvalidInput("its one-shot schedule has no run_at time")
        return f"at {run_at}"
    raise InvalidInput(f"schedule kind {kind!r} is not one Hermes documents (cron, interval, once)")


def _instant(value: Any, zone: str) -> float | None:
    """A Hermes timestamp (ISO, usually with an offset; a naive one is in Hermes's zone)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        from hermes_cron.logic.zones import load_zone

        moment = moment.replace(tzinfo=load_zone(zone))
    return moment.timestamp()


@dataclass(frozen=True)
class HermesJob:
    """One entry of Hermes's jobs.json as we read it: its identity, where it stands in Hermes,
    and our Job for it (None, with `problem`, when it can't or shouldn't be scheduled)."""

    id: str
    name: str
    state: str
    enabled: bool
    next_run_at: str | None
    next_at: float | None  # next_run_at as an instant
    last_status: str | None
    job: Job | None
    problem: str | None = None

    @property
    def our_name(self) -> str:
        return our_name(self.id)


def read_job(record: Any, zone: str, runner: Runner | None) -> HermesJob | None:
    """Our view of one Hermes job record; None for an entry with no usable id."""
    if not isinstance(record, dict):
        return None
    job_id = record.get("id")
    if not isinstance(job_id, str) or not ID_RE.fullmatch(job_id):
        return None
    name = record.get("name") if isinstance(record.get("name"), str) else job_id
    state = record.get("state") if isinstance(record.get("state"), str) else "scheduled"
    enabled = record.get("enabled", True) is not False and state != "paused"
    nxt = record.get("next_run_at") if isinstance(record.get("next_run_at"), str) else None
    last = record.get("last_status") if isinstance(record.get("last_status"), str) else None
    base = HermesJob(job_id, name[:200], state, enabled, nxt, _instant(nxt, zone), last, None)
    if state in NOT_SCHEDULED:
        return _with(base, problem=f"{state} in Hermes")
    sched = record.get("schedule") if isinstance(record.get("schedule"), dict) else {}
    if sched.get("kind") == "once" and record.get("last_run_at"):
        return _with(base, problem="a one-shot that has run")
    try:
        text = schedule_of(record)
        created = _instant(record.get("created_at"), zone) or 0.0
        anchor = created if sched.get("kind") == "interval" else 0.0
        env = ((EXPECT_ENV, nxt or ""),)
        argv = runner.argv(job_id) if runner is not None else ("/bin/false",)
        job = Job(our_name(job_id), argv, text, zone, enabled=enabled, overlap="skip", env=env,
                  timeout=runner.timeout if runner is not None else None,
                  anchor=float(int(anchor)), created=created,
                  extra={"hermes": {"id": job_id, "name": base.name}})
        job = job.evolve(misfire_grace=grace(job))
    except InvalidInput as e:
        return _with(base, problem=str(e).removeprefix(f"job {our_name(job_id)!r}: "))
    except (ValueError, OverflowError, TypeError) as e:
        return _with(base, problem=f"can't be read: {e}")
    return _with(base, job=job)


def _with(base: HermesJob, **changes: Any) -> HermesJob:
    from dataclasses import replace

    return replace(base, **changes)


def requested(hj: HermesJob, now: float, last_slot: float | None, next_slot: float | None) -> bool:
    """Whether Hermes asks for a run now that no slot of ours explains: `hermes cron run` sets
    next_run_at to now and expects a ticker to fire it. A next_run_at at or before a slot we
    already decided (ran, skipped or missed) is that slot, not a request; so is one that our
    next slot will fire within a second."""
    t = hj.next_at
    if hj.job is None or not hj.enabled or t is None or t > now:
        return False
    if last_slot is not None and t <= last_slot + 1.0:
        return False
    return next_slot is None or next_slot > now + 1.0


def runner_said(tail: bytes) -> str | None:
    """The last "hermes-cron: ..." line a Hermes job's runner wrote (RUNNER_SAYS), without
    the prefix: why it skipped, or how Hermes recorded a failure."""
    for line in reversed(tail.decode(errors="replace").splitlines()):
        if line.startswith(RUNNER_SAYS):
            return line.removeprefix(RUNNER_SAYS).strip()[:500]
    return None
