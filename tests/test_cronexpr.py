"""Cron expressions: fields, names, ranges, steps, the Vixie day rule, H, and errors."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from hermes_cron.logic.cronexpr import parse_cron
from hermes_cron.errors import InvalidInput
from hermes_cron.logic.schedule import parse_schedule, upcoming


def fires(expr: str, start: str, n: int, tz: str = "UTC", key: str = "") -> list[str]:
    sched = parse_schedule(expr, tz, hash_key=key)
    t = datetime.fromisoformat(start).replace(tzinfo=timezone.utc).timestamp()
    return [datetime.fromtimestamp(x, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") for x in upcoming(sched, t, n)]


def test_fields_names_ranges_steps():
    spec = parse_cron("0,30 9-17/2 * JAN-mar mon-FRI")
    assert spec.minutes == (0, 30)
    assert spec.hours == (9, 11, 13, 15, 17)
    assert spec.months == (1, 2, 3)
    assert spec.dows == (1, 2, 3, 4, 5)
    assert parse_cron("* * * * 7").dows == (0,)
    assert parse_cron("* * * * 5-7").dows == (0, 5, 6)
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)


def test_macros():
    assert fires("@hourly", "2026-01-01 10:20", 2) == ["2026-01-01 11:00:00", "2026-01-01 12:00:00"]
    assert fires("@daily", "2026-01-01 10:20", 1) == ["2026-01-02 00:00:00"]
    assert fires("@midnight", "2026-01-01 10:20", 1) == ["2026-01-02 00:00:00"]
    assert fires("@weekly", "2026-01-01 10:20", 1) == ["2026-01-04 00:00:00"]  # a Sunday
    assert fires("@monthly", "2026-01-15 10:20", 1) == ["2026-02-01 00:00:00"]
    assert fires("@yearly", "2026-01-15 10:20", 1) == ["2027-01-01 00:00:00"]
    assert fires("@annually", "2026-01-15 10:20", 1) == ["2027-01-01 00:00:00"]


def test_seconds_form_has_seconds_first():
    assert fires("*/20 * * * * *", "2026-01-01 10:00:05", 3) == [
        "2026-01-01 10:00:20", "2026-01-01 10:00:40", "2026-01-01 10:01:00"]
    assert fires("30 15 10 * * *", "2026-01-01 00:00", 1) == ["2026-01-01 10:15:30"]


def test_vixie_day_rule_or_when_both_restricted():
    # the 13th of each month OR any Friday
    got = fires("0 0 13 * 5", "2026-02-01", 6)
    assert got == ["2026-02-06 00:00:00", "2026-02-13 00:00:00", "2026-02-20 00:00:00",
                   "2026-02-27 00:00:00", "2026-03-06 00:00:00", "2026-03-13 00:00:00"]


def test_vixie_day_rule_and_when_a_field_starts_with_star():
    # '*/2' in day-of-month counts as a star: both fields must match (odd days that are Mondays)
    got = fires("0 0 */2 * 1", "2026-02-01", 3)
    days = [datetime.strptime(g, "%Y-%m-%d %H:%M:%S") for g in got]
    assert all(d.weekday() == 0 and d.day % 2 == 1 for d in days)


def test_leap_day():
    assert fires("0 0 29 2 *", "2026-03-01", 2) == ["2028-02-29 00:00:00", "2032-02-29 00:00:00"]


@pytest.mark.parametrize("expr, field, fragment", [
    ("61 * * * *", "minute", "61 is out of range 0-59"),
    ("* 24 * * *", "hour", "24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month", "0 is out of range 1-31"),
    ("* * * 13 *", "month", "13 is out of range 1-12"),
    ("* * * * 8", "day-of-week", "8 is out of range 0-7"),
    ("*/0 * * * *", "minute", "step"),
    ("10-5 * * * *", "minute", "backwards"),
    ("* * * FOO *", "month", "not a number"),
    ("a * * * *", "minute", "not a number"),
    ("60 * * * * *", "second", "out of range"),
    ("? * * * *", "minute", "only allowed in the day fields"),
])
def test_errors_name_the_field(expr, field, fragment):
    with pytest.raises(InvalidInput) as e:
        parse_cron(expr)
    assert f"{field} field" in str(e.value) and fragment in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("expr", ["* * * *", "* * * * * * *", "@fortnightly", ""])
def test_malformed_expressions(expr):
    with pytest.raises(InvalidInput):
        parse_schedule(expr, "UTC")


def test_hash_is_stable_spread_and_in_range():
    minutes = {parse_cron("H * * * *", f"job-{i}").minutes[0] for i in range(100)}
    assert len(minutes) > 40, "a hundred H jobs must not bunch up"
    assert all(0 <= m <= 59 for m in minutes)
    assert parse_cron("H * * * *", "backup").minutes == parse_cron("H * * * *", "backup").minutes
    assert parse_cron("H H * * *", "x").hours[0] in range(24)
    assert all(1 <= d <= 28 for i in range(50) for d in parse_cron("0 0 H * *", f"j{i}").doms)


def test_hash_forms():
    step = parse_cron("H/15 * * * *", "backup").minutes
    assert len(step) == 4 and step[0] < 15 and all(b - a == 15 for a, b in zip(step, step[1:]))
    ranged = parse_cron("H(0-29) * * * *", "backup").minutes
    assert len(ranged) == 1 and 0 <= ranged[0] <= 29
    ranged_step = parse_cron("H(10-40)/10 * * * *", "backup").minutes
    assert all(10 <= m <= 40 for m in ranged_step) and len(ranged_step) >= 3


def _random_field(rng: random.Random, lo: int, hi: int, day: bool) -> str:
    kind = rng.choice(["star", "value", "range", "list", "step"] if not day else ["star", "value", "range", "list"])
    if kind == "star":
        return "*"
    if kind == "value":
        return str(rng.randint(lo, hi))
    if kind == "range":  # a-a is avoided: croniter 7 reads "1-1" in day-of-week as every day
        a = rng.randint(lo, hi - 1)
        return f"{a}-{rng.randint(a + 1, hi)}"
    if kind == "list":
        return ",".join(str(v) for v in sorted(rng.sample(range(lo, hi + 1), 3)))
    return f"*/{rng.randint(2, max(2, (hi - lo) // 2))}"


def test_matches_croniter_on_random_expressions():
    """An independent implementation agrees on plain (UTC, no H) expressions."""
    croniter = pytest.importorskip("croniter").croniter
    rng = random.Random(1234)
    for _ in range(300):
        expr = " ".join([
            _random_field(rng, 0, 59, False), _random_field(rng, 0, 23, False),
            _random_field(rng, 1, 28, True), _random_field(rng, 1, 12, False),
            _random_field(rng, 0, 6, True),
        ])
        start = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() + rng.randint(0, 3 * 365 * 86400)
        ours = upcoming(parse_schedule(expr, "UTC"), start, 8)
        it = croniter(expr, datetime.fromtimestamp(start, timezone.utc))
        theirs = [it.get_next(float) for _ in range(8)]
        assert ours == theirs, expr
