"""The engine without processes: the real scheduler, store, dispatcher and adoption code, with
engine/system.py replaced by tests/fakes.py, driven through a run's whole life in milliseconds:
add -> tick -> hand over -> start -> finish -> record, and overlap, misfire, timeouts and
adoption. The real-process tests (test_daemon*.py) check the same behaviour with real
supervisors; these check the decisions and records, quickly."""

from __future__ import annotations

import os
import time

import pytest

from fakes import KILL, TERM, FakeSystem
from hermes_cron.app.jobs import add_job
from hermes_cron.contract.paths import Home
from hermes_cron.contract.procinfo import ProcId
from hermes_cron.engine.dispatch import Dispatcher
from hermes_cron.engine.ticker import Scheduler
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.run import IllegalTransition, Outcome, RunResult, RunState, transition
from hermes_cron.store.sqlite import SqliteStore

OWNER = ProcId(7, 7)


class Events:
    """A logger that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def _log(self, event: str, **kw) -> None:
        self.seen.append((event, kw))

    info = warning = error = debug = _log

    def named(self, event: str) -> list[dict]:
        return [kw for name, kw in self.seen if name == event]


@pytest.fixture
def engine(tmp_path):
    home = Home(str(tmp_path / "hermes"))
    store = SqliteStore(home)
    system = FakeSystem(now=time.time())
    log = Events()
    dispatcher = Dispatcher(home, store, OWNER, log, system=system)
    scheduler = Scheduler(home, store, OWNER, "boot-a")
    yield home, store, system, log, scheduler, dispatcher
    store.close()


def add(home: Home, name: str, schedule: str = "every 1m", **kw) -> Job:
    return add_job(home, Job(name=name, command=("true",), schedule=schedule, tz="UTC", **kw))


def slot(store: SqliteStore, name: str) -> float:
    return store.sched_rows()[name].next_run


def run_through(system, store, dispatcher, run_id: int) -> None:
    """Its supervisor starts the job, the job succeeds, the supervisor exits and is reaped."""
    system.start(run_id)
    system.end(run_id)
    system.exit(store.run(run_id).supervisor_pid)
    dispatcher.reap_children()


def tick_at(scheduler, dispatcher, system, at: float):
    system.now = at
    report = scheduler.claim(at)
    dispatcher.submit(report.claims)
    return report


def test_a_run_from_claim_to_record(engine):
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job")
    at = slot(store, "job")
    report = tick_at(scheduler, dispatcher, system, at)
    [claim] = report.claims
    run = store.run(claim.run_id)
    assert run.state is RunState.HANDED and run.started_at is None, "handed over, not started yet"
    assert slot(store, "job") == at + 60, "the schedule moved on under the lock"
    system.now = at + 0.5
    job = system.start(claim.run_id)
    system.now = at + 2
    system.end(claim.run_id)
    system.exit(run.supervisor_pid)
    dispatcher.reap_children()
    done = store.run(claim.run_id)
    assert done.state is RunState.DONE and done.outcome is Outcome.SUCCEEDED
    assert done.started_at == at + 0.5 and done.ended_at == at + 2 and done.job_pid == job.pid
    assert [e["status"] for e in log.named("job.finished")] == ["succeeded"]


def test_the_supervisor_reports_the_real_start(engine, tmp_path):
    home, store, system, log, scheduler, _ = engine
    d = Dispatcher(home, store, OWNER, log, spare=True, system=system)
    add(home, "job")
    report = tick_at(scheduler, d, system, slot(store, "job"))
    [claim] = report.claims
    job = system.start(claim.run_id)
    os.write(d._notify_w, f"S {claim.run_id} 123.5 {job.pid} 1\n".encode())
    d.on_notify()
    assert store.run(claim.run_id).state is RunState.HANDED, "recorded when idle, not in the burst"
    d.flush_started()
    run = store.run(claim.run_id)
    assert run.state is RunState.RUNNING and run.started_at == 123.5 and run.job_pid == job.pid
    system.end(claim.run_id, Outcome.FAILED, 3)
    os.write(d._notify_w, f"E {claim.run_id}\n".encode())
    d.on_notify()
    run = store.run(claim.run_id)
    assert run.outcome is Outcome.FAILED and run.exit_code == 3
    d.close()


def test_overlap_skip_records_the_slot_as_skipped(engine):
    home, store, system, _, scheduler, dispatcher = engine
    add(home, "job")
    first = slot(store, "job")
    [claim] = tick_at(scheduler, dispatcher, system, first).claims
    system.start(claim.run_id)
    report = tick_at(scheduler, dispatcher, system, first + 60)
    assert not report.claims and [s.run_id for s in report.skipped]
    skipped = store.run(report.skipped[0].run_id)
    assert skipped.outcome is Outcome.SKIPPED and str(claim.run_id) in skipped.reason


def test_overlap_replace_stops_the_earlier_run_first(engine):
    home, store, system, _, scheduler, dispatcher = engine
    add(home, "job", overlap="replace")
    first = slot(store, "job")
    [old] = tick_at(scheduler, dispatcher, system, first).claims
    report = tick_at(scheduler, dispatcher, system, first + 60)
    [new] = report.claims
    assert new.replaces == (old.run_id,)
    gone = store.run(old.run_id)  # never started: cancelled through its token
    assert gone.outcome is Outcome.INTERRUPTED and f"replaced by run {new.run_id}" in gone.reason


def test_slots_past_the_misfire_grace_are_recorded_missed(engine):
    home, store, system, _, scheduler, dispatcher = engine
    add(home, "job", misfire_grace=30.0)
    first = slot(store, "job")
    report = tick_at(scheduler, dispatcher, system, first + 631)  # the newest slot is 31 s late
    [missed] = report.missed
    assert missed.count == 11 and not report.claims
    assert slot(store, "job") == first + 660
    runs = store.history("job", 0)
    assert [r.outcome for r in runs] == [Outcome.MISSED]


def test_an_orphaned_job_is_watched_and_its_timeout_enforced(engine):
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job", timeout=5.0, kill_grace=2.0)
    at = slot(store, "job")
    [claim] = tick_at(scheduler, dispatcher, system, at).claims
    job = system.start(claim.run_id)
    supervisor = store.run(claim.run_id).supervisor_pid
    system.exit(supervisor)  # the supervisor dies; the job lives on
    dispatcher.reap_children()
    assert dispatcher.watched[claim.run_id].orphan == job
    assert dispatcher.next_deadline() == at + 5.0
    dispatcher.enforce(at + 5.0)
    assert system.killed(job.pid) == [TERM]
    dispatcher.enforce(at + 7.0)
    assert system.killed(job.pid) == [TERM, KILL]
    system.live.discard(job.pid)
    dispatcher.on_pidfd(dispatcher.watched[claim.run_id].pidfd)
    run = store.run(claim.run_id)
    assert run.outcome is Outcome.TIMED_OUT and "exit status is unknown" in run.reason


def test_a_new_daemon_starts_a_claim_within_its_grace(engine):
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job")
    at = slot(store, "job")
    system.now = at
    [claim] = scheduler.claim(at).claims  # claimed; the claiming process died before handing it over
    heir = Dispatcher(home, store, ProcId(8, 8), log, system=system)
    heir.recover(at + 10)
    run = store.run(claim.run_id)
    assert run.state is RunState.HANDED and run.owner_pid == 8
    assert [e["action"] for e in log.named("job.adopted")] == ["start"]


def test_an_edit_between_a_claim_and_its_slot_does_not_start_the_job_twice(engine, monkeypatch):
    """A tick claims a slot a moment before it comes; an edit of the schedule in that moment
    must not give the new schedule the same slot (a chaos run started a job twice so)."""
    from hermes_cron.app import jobs as app_jobs

    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job", schedule="* * * * *")
    at = slot(store, "job")
    assert len(tick_at(scheduler, dispatcher, system, at).claims) == 1  # the wall clock is before `at`: ahead
    with monkeypatch.context() as m:
        m.setattr(app_jobs.time, "time", lambda: at - 0.2)
        app_jobs.edit_job(home, "job", {"schedule": "*/30 * * * * *"})  # its slots include `at`
    assert slot(store, "job") == at + 30
    assert tick_at(scheduler, dispatcher, system, at + 0.5).claims == []
    assert [r.scheduled for r in store.history("job", 0)] == [at]


def test_a_claim_past_its_grace_is_abandoned_not_started(engine):
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job", misfire_grace=30.0)
    at = slot(store, "job")
    [claim] = scheduler.claim(at).claims
    heir = Dispatcher(home, store, ProcId(8, 8), log, system=system)
    heir.recover(at + 31)
    run = store.run(claim.run_id)
    assert run.outcome is Outcome.INTERRUPTED and "past the misfire grace" in run.reason
    assert not system.supervisors


def test_a_new_daemon_watches_a_live_supervisor_and_records_its_result(engine):
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job")
    at = slot(store, "job")
    [claim] = tick_at(scheduler, dispatcher, system, at).claims
    system.start(claim.run_id)
    heir = Dispatcher(home, store, ProcId(8, 8), log, system=system)
    heir.recover(at + 1)
    assert claim.run_id in heir.watched and store.run(claim.run_id).owner_pid == 8
    system.end(claim.run_id)
    system.exit(store.run(claim.run_id).supervisor_pid)
    heir.on_pidfd(heir.watched[claim.run_id].pidfd)
    assert store.run(claim.run_id).outcome is Outcome.SUCCEEDED


def test_a_supervisor_that_died_before_starting_leaves_the_run_interrupted(engine):
    home, store, system, _, scheduler, dispatcher = engine
    add(home, "job")
    [claim] = tick_at(scheduler, dispatcher, system, slot(store, "job")).claims
    system.exit(store.run(claim.run_id).supervisor_pid)
    dispatcher.reap_children()
    run = store.run(claim.run_id)
    assert run.outcome is Outcome.INTERRUPTED and "before it could start the job" in run.reason


def test_max_concurrent_queues_the_rest(engine):
    home, store, system, log, scheduler, _ = engine
    d = Dispatcher(home, store, OWNER, log, max_concurrent=1, system=system)
    add(home, "a")
    add(home, "b")
    at = max(slot(store, "a"), slot(store, "b"))
    report = tick_at(scheduler, d, system, at)
    assert len(report.claims) == 2 and len(d.watched) == 1 and len(d.queue) == 1
    first = next(iter(d.watched))
    run_through(system, store, d, first)
    assert len(d.watched) == 1 and not d.queue, "the queued run was handed over when room came"


def test_a_run_is_recorded_once(engine):
    home, store, system, _, scheduler, dispatcher = engine
    add(home, "job")
    [claim] = tick_at(scheduler, dispatcher, system, slot(store, "job")).claims
    result = RunResult(Outcome.SUCCEEDED, system.now)
    assert store.finish(claim.run_id, result, None) == (True, [])
    assert store.finish(claim.run_id, RunResult(Outcome.FAILED, system.now), None) == (False, [])
    assert store.run(claim.run_id).outcome is Outcome.SUCCEEDED
    store.mark_started([(claim.run_id, 1.0, None)])
    assert store.run(claim.run_id).state is RunState.DONE, "DONE is final"


@pytest.mark.parametrize("frm,to,ok", [
    (RunState.CLAIMED, RunState.HANDED, True), (RunState.HANDED, RunState.RUNNING, True),
    (RunState.RUNNING, RunState.DONE, True), (RunState.CLAIMED, RunState.DONE, True),
    (RunState.DONE, RunState.RUNNING, False), (RunState.RUNNING, RunState.HANDED, False),
    (RunState.HANDED, RunState.CLAIMED, False), (RunState.DONE, RunState.DONE, False),
])
def test_the_transition_table(frm, to, ok):
    if ok:
        assert transition(frm, to) is to
    else:
        with pytest.raises(IllegalTransition):
            transition(frm, to)


def test_history_keeps_only_keep_runs(engine):
    home, store, system, _, scheduler, dispatcher = engine
    add(home, "job", keep_runs=2)
    at = slot(store, "job")
    for i in range(4):
        [claim] = tick_at(scheduler, dispatcher, system, at + 60 * i).claims
        run_through(system, store, dispatcher, claim.run_id)
    assert len(store.history("job", 0)) == 2
    assert len(os.listdir(home.job_runs("job"))) == 2, "pruned runs' folders are removed"


def test_a_tick_is_decided_before_its_lock_and_written_under_it(engine):
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job")
    report = tick_at(scheduler, dispatcher, system, slot(store, "job"))
    assert report.decided_ahead and len(report.claims) == 1


def test_a_tick_decided_ahead_is_decided_again_when_another_ticker_wrote_meanwhile(engine, monkeypatch):
    """Between the decision made before the lock and the lock, another ticker claims the same
    slot: the store's data_version tells, the tick decides again under the lock, and the slot
    is claimed once."""
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job", overlap="allow")
    at = slot(store, "job")
    other_store = SqliteStore(home)
    other = Scheduler(home, other_store, ProcId(8, 8), "boot-a")
    decide_ahead = scheduler._prepare

    def then_the_other_claims(defs, now):
        ahead = decide_ahead(defs, now)
        assert ahead is not None and len(ahead.decided.claimed) == 1
        assert len(other.claim(now).claims) == 1
        return ahead

    monkeypatch.setattr(scheduler, "_prepare", then_the_other_claims)
    report = scheduler.claim(at)
    other_store.close()
    assert not report.decided_ahead and report.claims == []
    assert [r.scheduled for r in store.history("job", 0)] == [at], "the slot claimed once"
    assert slot(store, "job") > at


def no_transaction(*args, **kw):
    raise AssertionError("a quiet tick opens no transaction")


def test_an_idle_tick_opens_no_transaction_until_something_changes(engine, monkeypatch):
    """Nothing due, nobody wrote since the last tick, the same definitions: the tick takes the
    lock, sees that, and opens no transaction. Each kind of change brings the whole tick back."""
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job", overlap="allow")
    at = slot(store, "job")
    assert not tick_at(scheduler, dispatcher, system, at - 30).quiet  # the first tick reconciles
    real_tick = store.tick
    monkeypatch.setattr(store, "tick", no_transaction)
    assert tick_at(scheduler, dispatcher, system, at - 29).quiet
    assert tick_at(scheduler, dispatcher, system, at - 28).quiet
    monkeypatch.setattr(store, "tick", real_tick)

    other = SqliteStore(home)  # another process asks for a run (as `hermes-cron trigger` does)
    other.add_request("job", at - 27)
    other.close()
    report = tick_at(scheduler, dispatcher, system, at - 27)
    assert not report.quiet and [c.job.name for c in report.claims] == ["job"]
    assert not tick_at(scheduler, dispatcher, system, at - 26.5).quiet  # the hand-over was written since
    assert tick_at(scheduler, dispatcher, system, at - 26).quiet

    store.add_request("job", at - 25)  # this very connection writes (its own commits count too)
    report = tick_at(scheduler, dispatcher, system, at - 25)
    assert not report.quiet and len(report.claims) == 1
    tick_at(scheduler, dispatcher, system, at - 24.5)
    assert tick_at(scheduler, dispatcher, system, at - 24).quiet

    add(home, "other")  # the definitions changed: reconciled
    report = tick_at(scheduler, dispatcher, system, at - 23)
    assert not report.quiet and "other" in store.sched_rows()
    assert tick_at(scheduler, dispatcher, system, at - 22).quiet

    report = tick_at(scheduler, dispatcher, system, at)  # the slot came: nothing was written, time moved on
    assert not report.quiet and [c.scheduled for c in report.claims if c.job.name == "job"] == [at]


def test_a_write_between_the_look_ahead_and_the_lock_makes_the_tick_whole(engine, monkeypatch):
    """The tick found nothing due before the lock; a request is added before it takes the lock:
    the data_version differs under the lock, and the request is answered in this tick."""
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job")
    at = slot(store, "job")
    tick_at(scheduler, dispatcher, system, at - 30)
    look_ahead = scheduler._prepare

    def then_a_request(defs, now):
        ahead = look_ahead(defs, now)
        other = SqliteStore(home)
        other.add_request("job", now)
        other.close()
        return ahead

    monkeypatch.setattr(scheduler, "_prepare", then_a_request)
    report = tick_at(scheduler, dispatcher, system, at - 29)
    assert not report.quiet and len(report.claims) == 1


def test_an_idle_notifier_looks_only_when_something_changed(engine, monkeypatch):
    """The notifier's step finds nothing to note, send or settle; until somebody writes, its next
    steps do nothing (no transaction). A run that ended in another process is noted; one held
    for its retry decision keeps the notifier looking, as it comes due with time alone."""
    from hermes_cron.engine.notifier import Notifier

    home, store, system, log, scheduler, dispatcher = engine
    job = add(home, "job", on_failure="true")
    notifier = Notifier(home, log, dict)
    sent: list[list[int]] = []
    me = ProcId(9, 9)

    def run_hooks(ids: list[int]) -> None:  # as a hook runner would, at once
        sent.append(ids)
        for event_id in ids:
            assert store.claim_event(event_id, "here", me, time.time())
            assert store.end_event(event_id, me, time.time(), "ok", 0, None)

    notifier._launch = run_hooks
    now = time.time()
    notifier.step(store, now, sweep=True)
    real_note = store.note_runs
    monkeypatch.setattr(store, "note_runs", no_transaction)
    notifier.step(store, now + 1, sweep=True)
    notifier.step(store, now + 2, sweep=False)
    monkeypatch.setattr(store, "note_runs", real_note)

    other = SqliteStore(home)  # a foreground run ends in a command
    failed = RunResult(Outcome.FAILED, now + 3, now + 2.5, exit_code=1)
    run_id = other.insert_retry("job", "manual", None, 1, now + 2, None, job.spec_json)
    other.finish(run_id, failed, None)
    notifier.step(store, now + 3, sweep=True)
    assert len(sent) == 1, "the failure's event sent"

    held = other.insert_retry("job", "schedule", now, 1, now + 4, None, job.spec_json)  # its retry undecided
    other.finish(held, failed, None, hold=True)
    other.close()
    for t in (now + 5, now + 6):
        notifier.step(store, t, sweep=True)
    assert len(sent) == 1, "held for its retry decision"
    notifier.step(store, now + 10 + 60, sweep=True)  # journal.HELD_FOR later, nothing else written
    assert len(sent) == 2, "told once it was held long enough"


def test_recovery_reads_the_store_unless_nothing_was_open_and_nothing_changed(engine, monkeypatch):
    home, store, system, log, scheduler, dispatcher = engine
    reads = []
    open_runs = store.open_runs
    monkeypatch.setattr(store, "open_runs", lambda: reads.append(1) or open_runs())
    dispatcher.recover(system.now)
    dispatcher.recover(system.now, unchanged=True)  # nothing was open, nobody wrote: not read
    assert len(reads) == 1
    add(home, "job")
    [claim] = tick_at(scheduler, dispatcher, system, slot(store, "job")).claims
    dispatcher.recover(system.now)  # the run is open now
    dispatcher.recover(system.now, unchanged=True)  # so it is read again, though nobody wrote
    assert len(reads) == 3
    run_through(system, store, dispatcher, claim.run_id)
    dispatcher.recover(system.now)
    assert store.run(claim.run_id).outcome is Outcome.SUCCEEDED
    dispatcher.recover(system.now, unchanged=True)
    assert len(reads) == 4


def test_a_tick_for_some_requests_only_leaves_the_next_tick_whole(engine):
    """A foreground run answers its own request only: another request left open must still be
    answered by the next tick, though nobody wrote in between."""
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job", overlap="allow")
    at = slot(store, "job")
    tick_at(scheduler, dispatcher, system, at - 30)
    first, second = store.add_request("job", at - 29), store.add_request("job", at - 29)
    assert len(scheduler.claim(at - 29, only_requests={first}).claims) == 1
    report = tick_at(scheduler, dispatcher, system, at - 28)
    assert not report.quiet and len(report.claims) == 1
    assert store.request(second)[0], "the second request answered"


def test_a_tick_for_some_requests_that_claims_nothing_leaves_the_next_tick_whole(engine):
    """The same when the foreground tick's own request claims nothing (its job is gone)."""
    home, store, system, log, scheduler, dispatcher = engine
    add(home, "job")
    at = slot(store, "job")
    tick_at(scheduler, dispatcher, system, at - 30)
    first, second = store.add_request("gone", at - 29), store.add_request("job", at - 29)
    assert scheduler.claim(at - 29, only_requests={first}).claims == []
    assert store.request(first)[2], "answered with why"
    report = tick_at(scheduler, dispatcher, system, at - 28)
    assert not report.quiet and len(report.claims) == 1
    assert store.request(second)[0], "the second request answered"


def test_a_tick_neither_collects_garbage_nor_frees_the_replaced_definitions_under_its_lock(engine, monkeypatch):
    """With 100,000 jobs loaded, a full garbage collection or freeing the definitions a reconcile
    replaced takes ~350 ms each: neither happens while the tick holds its lock."""
    import gc
    import weakref

    home, store, system, log, scheduler, dispatcher = engine
    add(home, "a")
    scheduler.claim(time.time())
    old = weakref.ref(scheduler._reconciled)
    add(home, "b")  # a new version of the jobs file: the next tick reconciles it
    seen = {}
    sync = scheduler._sync

    def watched(tx, now, report):
        changed = sync(tx, now, report)
        seen.update(replaced=scheduler._reconciled is not old(), collecting=gc.isenabled(), old_kept=old() is not None)
        return changed

    monkeypatch.setattr(scheduler, "_sync", watched)
    assert gc.isenabled()
    scheduler.claim(time.time())
    assert seen == {"replaced": True, "collecting": False, "old_kept": True}
    assert gc.isenabled(), "collection is on again after the lock"
    assert old() is None, "the replaced definitions are freed once the lock is let go"
