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


# --- the rules of other crons, checked (issue 15) ---------------------------------------

@pytest.mark.parametrize("expr, lo, hi, field", [
    ("H/100 * * * *", 0, 59, "minutes"), ("H(50-52)/10 * * * *", 50, 52, "minutes"),
    ("H(0-1)/59 * * * *", 0, 1, "minutes"), ("0 0 H/31 * *", 1, 28, "doms"), ("0 H/25 * * *", 0, 23, "hours"),
])
def test_h_with_a_step_lands_inside_its_range_for_every_name(expr, lo, hi, field):
    for i in range(300):
        values = getattr(parse_cron(expr, f"job-{i}"), field)
        assert values and all(lo <= v <= hi for v in values), (expr, f"job-{i}", values)


def test_h_with_a_step_inside_the_range_keeps_its_values():
    """Names whose offset already fell inside keep the times they had (existing jobs don't move)."""
    for i in range(200):
        spec = parse_cron("H/20 * * * *", f"job-{i}")
        assert len(spec.minutes) == 3 and spec.minutes[1] - spec.minutes[0] == 20


@pytest.mark.parametrize("field, days", [
    ("1/2", (1, 3, 5)), ("6/1", (6,)), ("0/3", (0, 3, 6)), ("*/2", (0, 2, 4, 6)),
    ("Sat-Sun", (0, 6)), ("Fri-Sun", (0, 5, 6)), ("mon-0", (0, 1, 2, 3, 4, 5, 6)), ("Mon-Sun", tuple(range(7))),
    ("5-7", (0, 5, 6)), ("sun-sat", tuple(range(7))),
])
def test_day_of_week_steps_stop_at_saturday_and_ranges_may_end_on_sunday(field, days):
    assert parse_cron(f"0 0 * * {field}").dows == days


def test_sunday_ending_ranges_and_dow_steps_agree_with_croniter():
    croniter = pytest.importorskip("croniter").croniter
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    for field in ("Sat-Sun", "Fri-Sun", "mon-0", "1/2", "6/1", "0/3"):
        expr = f"0 12 * * {field}"
        it = croniter(expr, start)
        assert upcoming(parse_schedule(expr, "UTC"), start.timestamp(), 10) == [it.get_next(float) for _ in range(10)]


def test_last_day_of_the_month_across_month_ends_and_leap_years():
    assert fires("0 9 L * *", "2027-12-15", 4) == ["2027-12-31 09:00:00", "2028-01-31 09:00:00",
                                                  "2028-02-29 09:00:00", "2028-03-31 09:00:00"]
    assert fires("0 9 L 2 *", "2026-01-01", 3) == ["2026-02-28 09:00:00", "2027-02-28 09:00:00",
                                                  "2028-02-29 09:00:00"]
    assert fires("0 9 1,L * *", "2026-04-15", 3) == ["2026-04-30 09:00:00", "2026-05-01 09:00:00",
                                                    "2026-05-31 09:00:00"]


def test_last_and_nth_weekday_of_the_month():
    assert fires("0 0 * * 5L", "2026-11-01", 3) == ["2026-11-27 00:00:00", "2026-12-25 00:00:00",
                                                   "2027-01-29 00:00:00"]
    assert fires("0 0 * * friL", "2028-02-01", 1) == ["2028-02-25 00:00:00"]
    assert fires("0 0 * * 1#1", "2026-12-01", 2) == ["2026-12-07 00:00:00", "2027-01-04 00:00:00"]
    assert fires("0 0 * * mon#2,0L", "2026-12-01", 2) == ["2026-12-14 00:00:00", "2026-12-27 00:00:00"]
    assert fires("0 0 * * 7#5", "2026-11-01", 2) == ["2026-11-29 00:00:00", "2027-01-31 00:00:00"]


def test_nth_weekday_agrees_with_croniter():
    croniter = pytest.importorskip("croniter").croniter
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for field in ("1#1", "5#3", "0#5", "6#2"):
        expr = f"30 6 * * {field}"
        it = croniter(expr, start)
        assert upcoming(parse_schedule(expr, "UTC"), start.timestamp(), 12) == [it.get_next(float) for _ in range(12)]


@pytest.mark.parametrize("expr, fragment", [
    ("0 0 * * 1#6", "the week in '#' is 1 to 5"), ("0 0 * * 8L", "out of range"), ("0 0 * * xyzL", "not a number"),
    ("CRON_TZ=UTC 5 * * * *", "give the zone with --tz"), ("TZ=Europe/Paris 0 9 * * *", "give the zone with --tz"),
])
def test_what_is_not_read_says_why(expr, fragment):
    with pytest.raises(InvalidInput, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_cron(expr)


def test_the_croniter_reading_of_six_fields_is_named_when_it_differs():
    from hermes_cron.logic.cronexpr import seconds_last_reading

    assert seconds_last_reading("* * * * * */15") == "*/15 * * * * *"
    assert seconds_last_reading("0 0 0 * * *") is None  # both readings: midnight, every day
    assert seconds_last_reading("*/5 * * * *") is None  # five fields: one reading


def test_month_days_agrees_with_the_calendar_module():
    import calendar

    from hermes_cron.logic.cronexpr import month_days

    for year in range(1600, 2801):
        for month in range(1, 13):
            assert month_days(year, month) == calendar.monthrange(year, month)[1], (year, month)
