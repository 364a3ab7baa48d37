"""`hermes-cron explain`: why a slot ran or didn't. The pure logic (logic/explain.py) for every
verdict from synthetic facts, then the command beside a real daemon (ran, skipped, missed while
the daemon was stopped, paused, not a slot, retried)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from conftest import wait_for
from daemon_harness import runs
from hermes_cron.contract.heartbeat import LockWait
from hermes_cron.errors import InvalidInput
from hermes_cron.logic.explain import Facts, Moment, explain_at, explain_last, read_moment
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.run import Outcome, RunState, Trigger
from hermes_cron.logic.zones import load_zone
from hermes_cron.logic.zones_lite import utc_iso
from hermes_cron.store.base import RunRecord
from hermes_cron.store.journal import DefChange, Uptime
from test_daemon import add, daemons  # noqa: F401  (fixture)

UTC = timezone.utc


def ts(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


T0 = ts("2026-06-01T00:00:00")  # the jobs are added here
DAY = 86400.0


def job(schedule: str = "0 9 * * *", tz: str = "UTC", **kw) -> Job:
    return Job("j", ("true",), schedule, tz, created=kw.pop("created", T0), **kw)


def fp(j: Job) -> tuple[str, ...]:
    return tuple(j.fingerprint.split("\0"))


def run(id: int, scheduled: float | None, outcome: str | None = "succeeded", *, attempt: int = 1,
        trigger: str = "schedule", took: float = 2.0, exit_code: int | None = None, signal: int | None = None,
        reason: str | None = None, claimed: float | None = None, missed_count: int | None = None,
        first_missed: float | None = None, spec: Job | None = None) -> RunRecord:
    ran = outcome not in (None, "skipped", "missed")
    start = (scheduled or 0.0) + (attempt - 1) * 10.0
    state = RunState.DONE if outcome is not None else RunState.RUNNING
    return RunRecord(
        id=id, job="j", trigger=Trigger(trigger), scheduled=scheduled, state=state,
        outcome=Outcome(outcome) if outcome else None,
        claimed_at=claimed if claimed is not None else start - 0.25, owner_pid=None, owner_start=None,
        started_at=start if ran or outcome is None else None, ended_at=start + took if ran else None,
        supervisor_pid=None, supervisor_start=None, job_pid=None, job_start=None,
        exit_code=exit_code if exit_code is not None else (0 if outcome == "succeeded" else None), signal=signal,
        missed_count=missed_count, first_missed=first_missed, reason=reason, output=None, output_bytes=None,
        replaces=(), spec=json.dumps(spec.to_dict()) if spec else None, attempt=attempt)


def up(started: float, stopped: float | None, how: str = "stopped", pid: int = 100,
       seen: float = T0 + 10 * DAY) -> Uptime:
    """An up-time; one still up was seen at its last tick `seen` (the tests' default now)."""
    return Uptime("host", pid, started, stopped if stopped is not None else seen, stopped, how)


_DEFAULT = job()


def facts(current: Job | None = _DEFAULT, now: float = T0 + 10 * DAY, **kw) -> Facts:
    return Facts(job="j", now=now, current=current, **kw)


def at(f: Facts, text: str, tz: str = "UTC"):
    return explain_at(f, read_moment(text, load_zone(tz)))


NINE = ts("2026-06-03T09:00:00")  # a slot of the default job
ALWAYS_UP = [up(T0, None, "up")]


# ran -------------------------------------------------------------------------------------------

def test_a_slot_that_ran_names_its_run_and_result():
    e = at(facts(runs=[run(7, NINE, took=2.5)], uptimes=ALWAYS_UP), "2026-06-03T09:00")
    assert e.verdict == "ran"
    assert "ran as run 7: succeeded in 2.5 s" in e.sentence
    d = e.to_dict()
    assert d["run_id"] == 7 and d["status"] == "succeeded" and d["time"] == "2026-06-03T09:00:00.000Z"
    assert d["started_at"] == "2026-06-03T09:00:00.000Z" and d["duration_s"] == 2.5 and d["retried"] is False


@pytest.mark.parametrize("outcome, kw, said", [
    ("failed", {"exit_code": 3}, "failed with exit 3"),
    ("failed", {"signal": 9}, "failed, killed by signal 9"),
    ("timed_out", {"took": 60.0}, "timed out after 1m"),
    ("interrupted", {"reason": "stopped by hermes-cron stop --jobs"}, "was interrupted (stopped by hermes-cron"),
    ("lost", {"reason": "its host (b) stopped renewing its lease"}, "was lost (its host (b)"),
])
def test_each_result_is_said(outcome, kw, said):
    e = at(facts(runs=[run(3, NINE, outcome, **kw)]), "2026-06-03T09:00")
    assert e.verdict == "ran" and said in e.sentence, e.sentence
    assert e.facts["status"] == outcome


def test_a_retried_slot_lists_every_attempt():
    f = facts(runs=[run(11, NINE, "failed", exit_code=1), run(12, NINE, "succeeded", attempt=2, took=0.3)])
    e = at(f, "2026-06-03T09:00")
    assert e.verdict == "ran"
    assert "ran as run 11: failed with exit 1" in e.sentence and "retried as run 12: succeeded in 0.3 s" in e.sentence
    assert e.facts["run_id"] == 12 and e.facts["retried"] is True
    assert [(a["run_id"], a["attempt"], a["status"]) for a in e.facts["attempts"]] == \
        [(11, 1, "failed"), (12, 2, "succeeded")]


def test_a_run_still_going_is_running():
    e = at(facts(runs=[run(5, NINE, None)], now=NINE + 30), "2026-06-03T09:00")
    assert e.verdict == "running" and "is running as run 5: running since 2026-06-03 09:00:00+00:00" in e.sentence


def test_a_slot_run_late_after_a_downtime_says_so():
    late = run(8, NINE, claimed=NINE + 120)
    e = at(facts(runs=[late], uptimes=[up(T0, NINE - 60), up(NINE + 119, None, "up")]), "2026-06-03T09:00")
    assert e.verdict == "ran" and "2m late: no daemon was up from 2026-06-03 08:59:00+00:00 to " \
        "2026-06-03 09:01:59+00:00" in e.sentence


# skipped ---------------------------------------------------------------------------------------

def test_a_skipped_slot_names_the_run_that_was_going_on():
    going = run(4, NINE - DAY, took=DAY + 30)
    skipped = run(9, NINE, "skipped", reason="run(s) 4 still in flight (overlap: skip)")
    e = at(facts(runs=[going, skipped]), "2026-06-03T09:00")
    assert e.verdict == "skipped" and e.facts["overlapping_run_ids"] == [4] and e.facts["run_id"] == 9
    assert "was skipped (run 9): run 4 (slot 2026-06-02 09:00:00+00:00" in e.sentence
    assert "was still running (--overlap skip)" in e.sentence


def test_a_slot_cancelled_by_a_pause_is_skipped_with_its_reason():
    e = at(facts(runs=[run(9, NINE, "skipped", reason="job paused before it started")]), "2026-06-03T09:00")
    assert e.verdict == "skipped" and "job paused before it started" in e.sentence


# missed ----------------------------------------------------------------------------------------

def test_a_missed_slot_names_the_down_interval_and_the_grace():
    stopped, started = NINE - 3600, NINE + 7200
    record = run(20, NINE, "missed", claimed=started + 1, missed_count=1, first_missed=NINE)
    f = facts(runs=[record], uptimes=[up(T0, stopped), up(started, None, "up", pid=200)])
    e = at(f, "2026-06-03T09:00")
    assert e.verdict == "missed" and e.facts["recorded"] is True and e.facts["run_id"] == 20
    assert "no daemon was up from 2026-06-03 08:00:00+00:00 to 2026-06-03 11:00:00+00:00" in e.sentence
    assert "beyond the misfire grace (10m)" in e.sentence
    assert e.facts["down_from"] == utc_iso(stopped) and e.facts["down_until"] == utc_iso(started)
    assert e.facts["misfire_grace_s"] == 600.0


def test_an_older_slot_of_a_missed_batch_is_covered_by_the_record():
    j = job("every 1m", misfire_grace=3600.0)
    slot = ts("2026-06-03T09:00:00")
    record = run(21, slot + 120, "missed", claimed=slot + 300, missed_count=3, first_missed=slot)
    f = facts(j, runs=[record, run(22, slot + 180)], uptimes=[up(T0, slot - 30, "crashed"), up(slot + 299, None, "up")])
    e = at(f, "2026-06-03T09:01")
    assert e.verdict == "missed" and "one of 3 slots missed together, run 21" in e.sentence
    assert "only the newest slot that passed is run late" in e.sentence
    assert "crashed: last seen at 2026-06-03 08:59:30+00:00" in e.sentence


def test_no_record_but_no_daemon_up_says_so():
    f = facts(uptimes=[up(T0, NINE - 60), up(NINE + 3600, None, "up")])
    e = at(f, "2026-06-03T09:00")
    assert e.verdict == "missed" and e.facts["recorded"] is False and e.facts["run_id"] is None
    assert "no daemon was up from 2026-06-03 08:59:00+00:00 to 2026-06-03 10:00:00+00:00" in e.sentence


def test_still_down_now():
    f = facts(uptimes=[up(T0, NINE - 60)], now=NINE + 30)
    e = at(f, "2026-06-03T09:00")
    assert e.verdict == "missed" and "no daemon was up from 2026-06-03 08:59:00+00:00 until now" in e.sentence
    assert "a daemon started before 2026-06-03 09:10:00+00:00 would still run it" in e.sentence


# paused, not defined, removed --------------------------------------------------------------------

def test_paused_from_the_definition_history():
    j = job()
    hist = [DefChange("j", T0, "insert", fp(j), True), DefChange("j", NINE - 3600, "set-enabled", None, False),
            DefChange("j", NINE + 3600, "enable", None, True)]
    e = at(facts(j, changes=hist, uptimes=ALWAYS_UP), "2026-06-03T09:00")
    assert e.verdict == "paused" and e.facts["exact"] is True
    assert "paused at 2026-06-03 08:00:00+00:00, resumed at 2026-06-03 10:00:00+00:00" in e.sentence
    assert e.facts["paused_at"] == utc_iso(NINE - 3600) and e.facts["resumed_at"] == utc_iso(NINE + 3600)
    assert at(facts(j, changes=hist, runs=[run(1, NINE + DAY)]), "2026-06-04T09:00").verdict == "ran"


def test_a_history_that_begins_after_the_job_was_added():
    """Added before the history was kept: from its `created` on, the first kept change undone."""
    j = job(enabled=False)
    pause = NINE  # applied by the tick that would have claimed this slot: the pause holds for it
    f = facts(j, changes=[DefChange("j", pause, "set-enabled", None, False)], runs=[run(1, NINE - DAY)],
              uptimes=ALWAYS_UP)
    assert at(f, "2026-05-31T09:00").verdict == "not_defined"
    assert at(f, "2026-06-02T09:00").verdict == "ran"
    e = at(f, "2026-06-03T09:00")
    assert e.verdict == "paused" and e.facts["exact"] is True and "paused at 2026-06-03 09:00:00+00:00, and is " \
        "still paused" in e.sentence


def test_paused_now_without_a_recorded_change_is_said_to_be_approximate():
    j = job(enabled=False)
    e = at(facts(j, runs=[run(1, NINE - DAY)], uptimes=ALWAYS_UP), "2026-06-03T09:00")
    assert e.verdict == "paused" and e.facts["exact"] is False
    assert "paused at some time after 2026-06-02 08:59:59.750+00:00 (when is not recorded), and is still paused" \
        in e.sentence


def test_not_defined_yet():
    j = job()
    hist = [DefChange("j", T0 + 3600, "insert", fp(j), True)]
    e = at(facts(j, changes=hist), "2026-06-01T00:30")
    assert e.verdict == "not_defined" and e.facts["added_at"] == utc_iso(T0 + 3600)
    assert "is before job 'j' existed: it was added at 2026-06-01 01:00:00+00:00" in e.sentence
    # without a history, the job's `created` says it
    assert at(facts(job(created=T0 + 7200)), "2026-06-01T01:00").verdict == "not_defined"


def test_removed_and_added_again():
    j = job()
    hist = [DefChange("j", T0, "insert", fp(j), True), DefChange("j", NINE - 3600, "delete", None, True),
            DefChange("j", NINE + DAY - 3600, "insert", fp(j), True)]
    e = at(facts(j, changes=hist), "2026-06-03T09:00")
    assert e.verdict == "removed" and e.facts["removed_at"] == utc_iso(NINE - 3600)
    assert "was removed, at 2026-06-03 08:00:00+00:00; it was added again at 2026-06-04 08:00:00+00:00" in e.sentence
    gone = facts(None, changes=hist[:2], runs=[run(1, NINE - DAY)])
    assert explain_at(gone, Moment(NINE)).verdict == "removed"


def test_a_schedule_change_from_the_history():
    old, new = job("0 9 * * *"), job("0 10 * * *")
    reset = NINE + 3600 * 3
    hist = [DefChange("j", T0, "insert", fp(old), True), DefChange("j", reset, "reset", fp(new), True)]
    f = facts(new, changes=hist, runs=[run(1, NINE), run(2, NINE + DAY + 3600)])
    assert at(f, "2026-06-03T09:00").verdict == "ran"
    e = at(f, "2026-06-04T09:00")
    assert e.verdict == "not_a_slot" and e.facts["schedule"] == "0 10 * * *"
    assert e.facts["next_slot"] == "2026-06-04T10:00:00.000Z"


# not a slot, DST -------------------------------------------------------------------------------

def test_not_a_slot_gives_the_neighbours():
    e = at(facts(), "2026-06-03T09:30")
    assert e.verdict == "not_a_slot"
    assert e.facts["previous_slot"] == "2026-06-03T09:00:00.000Z" and e.facts["next_slot"] == "2026-06-04T09:00:00.000Z"
    assert "is not a slot of '0 9 * * *' (UTC): the previous slot is 2026-06-03 09:00:00+00:00, the next " \
        "2026-06-04 09:00:00+00:00" in e.sentence
    first = at(facts(), "2026-06-01T05:00")
    assert first.facts["previous_slot"] is None and "there is no slot before it" in first.sentence


def test_a_skipped_wall_time_is_moved_to_the_jump():
    j = job("30 2 * * *", "Europe/Berlin")
    jump = ts("2027-03-28T03:00:00+02:00")
    f = facts(j, now=jump + DAY, runs=[run(40, jump)])
    m = read_moment("2027-03-28T02:30", load_zone("Europe/Berlin"))
    assert m.dst == "gap" and m.instant == jump
    e = explain_at(f, m)
    assert e.verdict == "moved" and e.facts["why"] == "dst_gap" and e.facts["moved_to"] == "2027-03-28T01:00:00.000Z"
    assert e.facts["slot"]["verdict"] == "ran" and e.facts["slot"]["run_id"] == 40
    assert e.sentence.startswith("2027-03-28 02:30:00 does not exist in Europe/Berlin: the clocks jump from 02:00 "
                                 "to 03:00 (DST)")
    assert "runs at the jump for it, 2027-03-28 03:00:00+02:00; that slot ran as run 40" in e.sentence


def test_a_repeated_wall_time_runs_at_its_first_occurrence():
    j = job("30 2 * * *", "Europe/Berlin")
    first = ts("2027-10-31T02:30:00+02:00")
    e = at(facts(j, now=first + DAY, runs=[run(41, first)]), "2027-10-31T02:30", "Europe/Berlin")
    assert e.verdict == "moved" and e.facts["why"] == "dst_repeat" and e.facts["moved_to"] == utc_iso(first)
    assert "happens twice in Europe/Berlin (DST ends)" in e.sentence and "runs at the first only" in e.sentence


def test_a_wildcard_schedule_follows_the_clock_through_dst():
    j = job("30 * * * *", "Europe/Berlin")
    e = at(facts(j, now=ts("2027-03-29T00:00:00")), "2027-03-28T02:30", "Europe/Berlin")
    assert e.verdict == "not_a_slot" and "follows the clock" in e.sentence
    assert e.facts["next_slot"] == "2027-03-28T01:30:00.000Z"  # 03:30+02:00
    both = at(facts(j, now=ts("2027-11-01T00:00:00")), "2027-10-31T02:30", "Europe/Berlin")
    assert "runs at both" in both.sentence and both.facts["dst"] == "repeat"
    assert both.time == ts("2027-10-31T02:30:00+02:00") and both.facts["second"]["time"] == "2027-10-31T01:30:00.000Z"


# waiting, not yet, unknown ---------------------------------------------------------------------

def test_waiting_for_the_tick_lock():
    wait = LockWait(NINE - 120, 4242, "python3 hermes-agent ticker")
    f = facts(now=NINE + 30, lock_wait=wait, daemon_pid=77, uptimes=[up(T0, None, "up", pid=77)])
    e = at(f, "2026-06-03T09:00")
    assert e.verdict == "waiting_for_lock" and e.facts["holder_pid"] == 4242
    assert "waiting for the tick lock since 2026-06-03 08:58:00+00:00, held by pid 4242 (python3 hermes-agent " \
        "ticker)" in e.sentence
    later = facts(now=NINE + 30, lock_wait=LockWait(NINE + 10, 4242, None), daemon_pid=77)
    assert at(later, "2026-06-03T09:00").verdict != "waiting_for_lock"


def test_not_yet_a_future_slot_and_one_due_now():
    e = at(facts(now=NINE - 3600), "2026-06-03T09:00")
    assert e.verdict == "not_yet" and e.facts["next_slot"] == utc_iso(NINE) and e.facts["due"] is False
    assert "has not come yet: it comes in 1h" in e.sentence
    live = Uptime("host", 77, T0, NINE - 0.5, None, "up")
    due = at(facts(now=NINE + 0.3, daemon_pid=77, uptimes=[live]), "2026-06-03T09:00")
    assert due.verdict == "not_yet" and due.facts["due"] is True and "due and not claimed yet" in due.sentence


def test_pruned_history_is_said_honestly():
    j = job("every 1h", keep_runs=3, anchor=T0)
    kept = [run(i, NINE + i * 3600) for i in (1, 2, 3)]
    e = at(facts(j, runs=kept, uptimes=ALWAYS_UP), "2026-06-02T09:00")
    assert e.verdict == "unknown" and e.facts["why"] == "pruned" and e.facts["keep_runs"] == 3
    assert "its record was pruned (the job keeps its last 3 runs" in e.sentence


def test_up_but_nothing_recorded_is_unknown():
    e = at(facts(uptimes=ALWAYS_UP), "2026-06-03T09:00")
    assert e.verdict == "unknown" and e.facts["why"] == "not_recorded" and "a daemon was up then (pid 100" in e.sentence
    assert at(facts(), "2026-06-03T09:00").facts["why"] == "not_recorded"  # no up-time kept at all


# the last N slots, reading a moment ------------------------------------------------------------

def test_the_last_slots_newest_first():
    f = facts(now=NINE + 60, runs=[run(1, NINE - DAY), run(2, NINE)], uptimes=ALWAYS_UP)
    found = explain_last(f, 3)
    assert [e.time for e in found] == [NINE, NINE - DAY, NINE - 2 * DAY]
    assert [e.verdict for e in found] == ["ran", "ran", "unknown"]
    assert explain_last(f)[0].facts["run_id"] == 2
    fresh = explain_last(facts(now=T0 + 60), 2)
    assert len(fresh) == 1 and fresh[0].verdict == "not_yet"
    assert fresh[0].facts["next_slot"] == "2026-06-01T09:00:00.000Z"


def test_the_last_slots_of_a_reboot_job():
    j = job("@reboot")
    assert explain_last(facts(j))[0].verdict == "not_yet"
    boot = run(3, T0 + 100, trigger="reboot")
    assert explain_last(facts(j, runs=[boot]))[0].facts["run_id"] == 3


def test_read_moment():
    berlin = load_zone("Europe/Berlin")
    assert read_moment("2026-06-03T11:00", berlin).instant == NINE
    assert read_moment("2026-06-03T09:00Z", berlin).instant == NINE
    assert read_moment("2026-06-03T10:00+01:00", berlin).instant == NINE
    assert read_moment("2026-06-03 11:00", berlin).dst is None
    for bad in ("tomorrow", "2026-13-01T00:00", "3100-01-01T00:00"):
        with pytest.raises(InvalidInput):
            read_moment(bad, berlin)


# with a real daemon ----------------------------------------------------------------------------

def explain(cli, *args: str):
    r = cli("explain", *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
def test_ran_and_not_a_slot_with_a_daemon(cli, home, daemons):
    add(cli, "tick", "*/4 * * * * *", "true", tz="UTC")
    d = daemons()
    d.wait_started()
    done = wait_for(lambda: [r for r in runs(home, "tick") if r.outcome == "succeeded"][1:] and
                    [r for r in runs(home, "tick") if r.outcome == "succeeded"], 20, what="two runs")
    slot = done[0].scheduled
    e = explain(cli, "tick", "--at", utc_iso(slot))
    assert e["verdict"] == "ran" and e["run_id"] == done[0].id and e["status"] == "succeeded"
    assert f"ran as run {done[0].id}: succeeded" in e["sentence"]
    other = explain(cli, "tick", "--at", utc_iso(slot + 2))
    assert other["verdict"] == "not_a_slot"
    assert other["previous_slot"] == utc_iso(slot) and other["next_slot"] == utc_iso(slot + 4)
    last = explain(cli, "tick", "--last", "3")
    assert len(last) >= 2 and [e["time"] for e in last] == sorted((e["time"] for e in last), reverse=True)
    assert {e["verdict"] for e in last} <= {"ran", "running", "not_yet"}
    assert len(explain(cli, "tick", "--last", "1000")) < 1000  # none before the job was added
    text = cli("explain", "tick", "--at", utc_iso(slot))
    assert text.returncode == 0 and text.stdout.startswith("Slot ") and "ran as run" in text.stdout
    assert cli("explain", "nope").returncode == 3
    assert cli("explain", "tick", "--at", "soon").returncode == 2
    assert cli("explain", "tick", "--at", utc_iso(slot), "--last", "2").returncode == 2
    assert d.stop() == 0


@pytest.mark.slow
def test_a_skipped_slot_with_a_daemon(cli, home, daemons):
    add(cli, "long", "*/2 * * * * *", "sleep", "3", tz="UTC")
    d = daemons()
    d.wait_started()
    skipped = wait_for(lambda: [r for r in runs(home, "long") if r.outcome == "skipped"], 20, what="a skipped slot")
    assert d.stop() == 0
    e = explain(cli, "long", "--at", utc_iso(skipped[0].scheduled))
    going = [r.id for r in runs(home, "long") if r.outcome == "succeeded" or r.outcome is None
             or r.outcome == "interrupted"]
    assert e["verdict"] == "skipped" and e["run_id"] == skipped[0].id
    assert e["overlapping_run_ids"] and set(e["overlapping_run_ids"]) <= set(going)
    assert f"run {e['overlapping_run_ids'][0]}" in e["sentence"] and "still running" in e["sentence"]


@pytest.mark.slow
def test_a_slot_missed_while_the_daemon_was_stopped(cli, home, daemons):
    add(cli, "often", "*/2 * * * * *", "true", tz="UTC", misfire_grace="1s")
    d = daemons()
    d.wait_started()
    wait_for(lambda: [r for r in runs(home, "often") if r.outcome == "succeeded"], 15, what="a first run")
    assert d.stop() == 0
    stopped = time.time()
    wait_for(lambda: time.time() > stopped + 7, 10, interval=0.1, what="slots to pass with no daemon")
    d2 = daemons()
    d2.wait_started()
    started = time.time()
    missed = wait_for(lambda: [r for r in runs(home, "often") if r.outcome == "missed"], 15, what="a missed record")
    assert d2.stop() == 0
    slot = missed[0].first_missed
    assert slot is not None and stopped - 1 < slot < started
    e = explain(cli, "often", "--at", utc_iso(slot))
    assert e["verdict"] == "missed" and e["recorded"] is True and e["run_id"] == missed[0].id
    assert abs(ts(e["down_from"]) - stopped) < 3 and abs(ts(e["down_until"]) - started) < 15
    assert ts(e["down_from"]) < slot < ts(e["down_until"])
    shown = [e[k].replace("T", " ").replace(".000Z", "Z").replace("Z", "+00:00") for k in ("down_from", "down_until")]
    assert f"no daemon was up from {shown[0]} to {shown[1]}" in e["sentence"]
    assert "misfire grace (1s)" in e["sentence"] or "only the newest slot that passed is run late" in e["sentence"]


@pytest.mark.slow
def test_a_daemon_killed_with_9_is_dated_at_its_last_tick(cli, home, daemons):
    """kill -9 leaves the daemon's up-time open; the next start closes it as crashed at the last
    tick it noted (cron/.daemon_seen, every tick), not at its last heartbeat."""
    add(cli, "often", "*/2 * * * * *", "true", tz="UTC", misfire_grace="1s")
    d = daemons("--heartbeat-every", "1000")  # the database hears of it at its start only
    d.wait_started()
    wait_for(lambda: len([r for r in runs(home, "often") if r.outcome == "succeeded"]) >= 3, 15, what="runs")
    d.kill9()
    killed = time.time()
    wait_for(lambda: time.time() > killed + 6, 10, interval=0.1, what="slots to pass with no daemon")
    d2 = daemons()
    d2.wait_started()
    missed = wait_for(lambda: [r for r in runs(home, "often") if r.outcome == "missed"], 15, what="a missed record")
    assert d2.stop() == 0
    e = explain(cli, "often", "--at", utc_iso(missed[0].first_missed))
    assert e["verdict"] == "missed" and e["down_how"] == "crashed", e
    assert killed - 2.5 < ts(e["down_from"]) <= killed, (e["down_from"], killed)


@pytest.mark.slow
def test_a_paused_job_with_a_daemon(cli, home, daemons):
    add(cli, "nap", "*/2 * * * * *", "true", tz="UTC")
    d = daemons()
    d.wait_started()
    wait_for(lambda: [r for r in runs(home, "nap") if r.outcome == "succeeded"], 15, what="a first run")
    assert cli("pause", "nap").returncode == 0
    paused = time.time()
    wait_for(lambda: time.time() > paused + 3, 10, interval=0.1, what="a slot to pass while paused")
    e = explain(cli, "nap")[0]
    assert e["verdict"] == "paused" and "paused" in e["sentence"] and ts(e["time"]) > paused
    assert d.stop() == 0


@pytest.mark.slow
def test_a_retried_slot_with_a_daemon(cli, home, daemons, tmp_path):
    from test_retries import soon

    counter = tmp_path / "n"
    script = f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 2 ]'
    add(cli, "flaky", soon(), "sh", "-c", script, retries="2", retry_delay="0.3s", tz="UTC")
    d = daemons()
    d.wait_started()
    done = wait_for(lambda: [r for r in runs(home, "flaky") if r.outcome == "succeeded"], 20, what="a success")
    assert d.stop() == 0
    e = explain(cli, "flaky", "--at", utc_iso(done[0].scheduled))
    assert e["verdict"] == "ran" and e["retried"] is True and e["run_id"] == done[0].id
    assert [a["status"] for a in e["attempts"]] == ["failed", "succeeded"]
    first = e["attempts"][0]["run_id"]
    assert f"ran as run {first}: failed with exit 1" in e["sentence"]
    assert f"retried as run {done[0].id}: succeeded" in e["sentence"]
