"""The pure parts of ticking the Hermes agent's jobs: how its schedules map to ours, its grace
rule, when its next_run_at is a `hermes cron run` request, and the line-by-line config edit
that leaves every other byte of Hermes's config.yaml as it was."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hermes_cron.logic import yamlkeys
from hermes_cron.logic.hermes import Runner, cron_text, read_job, requested
from hermes_cron.logic.schedule import upcoming

RUNNER = Runner("/usr/bin/python3", "/x/hermes_fire.py", "/h")


def record(**kw):
    base = {"id": "abc123def456", "name": "n", "enabled": True, "state": "scheduled",
            "schedule": {"kind": "cron", "expr": "0 9 * * *"}, "created_at": "2026-11-28T10:00:00+00:00",
            "next_run_at": "2026-11-29T09:00:00+00:00"}
    base.update(kw)
    return base


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("expr, ours", [
    ("*/5 * * * *", "*/5 * * * *"),
    ("*/5 * * * * */10", "*/10 */5 * * * *"),  # croniter: seconds last
    ("0 9 * * 1 30 *", "30 0 9 * * 1"),  # a seventh field (year) of `*` is dropped
])
def test_croniter_expressions_read_as_croniter_reads_them(expr, ours):
    assert cron_text(expr) == ours


def test_a_year_field_is_reported_not_guessed():
    hj = read_job(record(schedule={"kind": "cron", "expr": "0 9 * * * 0 2027"}), "UTC", RUNNER)
    assert hj is not None and hj.job is None and "year" in hj.problem


def test_seconds_last_fires_where_croniter_says():
    croniter = pytest.importorskip("croniter")
    hj = read_job(record(schedule={"kind": "cron", "expr": "*/2 * * * * */20"}), "UTC", RUNNER)
    start = datetime(2026, 11, 28, 10, 0, 5, tzinfo=timezone.utc)
    it = croniter.croniter("*/2 * * * * */20", start)
    theirs = [it.get_next(datetime).timestamp() for _ in range(8)]
    assert upcoming(hj.job.compiled, start.timestamp(), 8) == theirs


def test_interval_is_anchored_at_creation_and_graced_by_hermes_rule():
    hj = read_job(record(schedule={"kind": "interval", "minutes": 30}), "UTC", RUNNER)
    job = hj.job
    assert job.schedule == "every 30m" and job.anchor == ts("2026-11-28T10:00:00")
    assert upcoming(job.compiled, ts("2026-11-28T10:00:00"), 2) == [ts("2026-11-28T10:30:00"),
                                                                   ts("2026-11-28T11:00:00")]
    assert job.misfire_grace == 900  # half the period
    daily = read_job(record(), "UTC", RUNNER).job
    assert daily.misfire_grace == 7200  # clamped to 2 h
    minutely = read_job(record(schedule={"kind": "cron", "expr": "* * * * *"}), "UTC", RUNNER).job
    assert minutely.misfire_grace == 120  # clamped to 120 s


def test_one_shots_run_once_with_hermes_grace():
    once = {"kind": "once", "run_at": "2026-11-28T12:00:00+00:00"}
    hj = read_job(record(schedule=once, repeat={"times": 1, "completed": 0}), "UTC", RUNNER)
    assert hj.job.schedule.startswith("at ") and hj.job.misfire_grace == 120
    ran = read_job(record(schedule=once, last_run_at="2026-11-28T12:00:01+00:00"), "UTC", RUNNER)
    assert ran.job is None


def test_states_hermes_does_not_schedule():
    assert read_job(record(enabled=False, state="paused"), "UTC", RUNNER).job.enabled is False
    assert read_job(record(state="paused"), "UTC", RUNNER).job.enabled is False
    for state in ("completed", "error"):
        hj = read_job(record(state=state), "UTC", RUNNER)
        assert hj.job is None and state in hj.problem
    assert read_job(record(id="../x"), "UTC", RUNNER) is None
    assert read_job("junk", "UTC", RUNNER) is None


def test_zone_and_naive_times_are_hermes_zone():
    hj = read_job(record(next_run_at="2026-11-29T09:00:00"), "Europe/Paris", RUNNER)
    assert hj.job.tz == "Europe/Paris" and hj.next_at == ts("2026-11-29T08:00:00")


def test_the_runner_is_hermes_python_isolated():
    hj = read_job(record(), "UTC", RUNNER)
    assert hj.job.argv == ["/usr/bin/python3", "-I", "/x/hermes_fire.py", "fire", "/h", "abc123def456"]
    assert hj.job.hermes == {"id": "abc123def456", "name": "n"}
    assert dict(hj.job.env)["HERMES_CRON_HERMES_NEXT_RUN"] == "2026-11-29T09:00:00+00:00"


def test_hermes_cron_run_is_a_request_but_our_own_slots_are_not():
    now = ts("2026-11-28T10:07:30")
    asked = read_job(record(next_run_at="2026-11-28T10:07:29+00:00"), "UTC", RUNNER)
    # set due now, our last slot long before, our next slot far ahead: a request
    assert requested(asked, now, ts("2026-11-28T09:00:00"), ts("2026-11-29T09:00:00"))
    # a next_run_at at or before a slot we decided is that slot
    assert not requested(asked, now, ts("2026-11-28T10:07:29"), ts("2026-11-29T09:00:00"))
    # our own slot fires now anyway
    assert not requested(asked, now, None, now)
    # not due yet, or paused
    later = read_job(record(next_run_at="2026-11-28T10:08:00+00:00"), "UTC", RUNNER)
    assert not requested(later, now, None, ts("2026-11-29T09:00:00"))
    paused = read_job(record(state="paused", next_run_at="2026-11-28T10:07:29+00:00"), "UTC", RUNNER)
    assert not requested(paused, now, None, None)


CONFIG = "# Hermes config\nmodel:\n  default: x  # mine\n\ncron:\n    max_parallel_jobs: 2 # two\nlast: 1\n"


def test_provider_is_added_as_one_line_in_the_sections_own_indent():
    out = yamlkeys.set_child(CONFIG, "cron", "provider", "hermes-cron")
    assert out == CONFIG.replace("cron:\n", "cron:\n    provider: hermes-cron\n")
    assert yamlkeys.child(out, "cron", "provider").value == "hermes-cron"
    assert yamlkeys.child(out, "cron", "max_parallel_jobs").value == "2"


def test_an_existing_provider_line_changes_value_only():
    text = "cron:\r\n  provider: 'chronos'   # the NAS one\r\n"
    out = yamlkeys.set_child(text, "cron", "provider", "hermes-cron")
    assert out == "cron:\r\n  provider: hermes-cron   # the NAS one\r\n"
    plain = yamlkeys.set_child("cron:\n  provider: builtin # b\n  x: 1\n", "cron", "provider", "hermes-cron")
    assert plain == "cron:\n  provider: hermes-cron # b\n  x: 1\n"


def test_a_missing_section_is_appended_and_an_empty_file_gets_one():
    assert yamlkeys.set_child("a: 1", "cron", "provider", "p") == "a: 1\ncron:\n  provider: p\n"
    assert yamlkeys.set_child("", "cron", "provider", "p") == "cron:\n  provider: p\n"


@pytest.mark.parametrize("text", ["cron: {provider: x}\n", "cron:\n  a: 1\ncron:\n  b: 2\n"])
def test_what_is_not_plain_block_yaml_is_refused(text):
    with pytest.raises(yamlkeys.NotUnderstood):
        yamlkeys.set_child(text, "cron", "provider", "p")


def test_top_level_scalars():
    assert yamlkeys.top('timezone: "Asia/Kolkata"  # IST\n', "timezone") == "Asia/Kolkata"
    assert yamlkeys.top("timezone: null\n", "timezone") == ""
    assert yamlkeys.top("  timezone: X\n", "timezone") == ""  # indented: not top level
