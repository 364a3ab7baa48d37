"""Time zones and DST, checked around real transitions against an independent source.

The rule (README, "Time zones and DST"): schedules that name their hours run once per named
wall time, a skipped time at the moment of the jump, a repeated time at its first occurrence;
schedules with `*` in the minute or hour field follow the clock as it reads.

systemd's calendar code is the independent source. It skips times that don't exist and fires
repeated ones once, so it must agree with us everywhere except (a) the jump instants we add
for skipped fixed times and (b) second passes of a repeated hour that wildcard schedules add.
Each difference is asserted to be exactly one of those.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from hermes_cron.errors import InvalidInput

from hermes_cron.logic.schedule import parse_schedule, upcoming
from hermes_cron.logic.zones import load_zone, offset_at, timeline

UTC = timezone.utc


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() if "+" not in text else \
        datetime.fromisoformat(text).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ours(expr: str, tz: str, base: str, n: int) -> list[str]:
    return [iso(t) for t in upcoming(parse_schedule(expr, tz), ts(base), n)]


def systemd(spec: str, base: str, n: int) -> list[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (independent DST check)")
    out = subprocess.run(
        [exe, "calendar", f"--iterations={n}", spec, f"--base-time=@{int(ts(base))}"],
        capture_output=True, text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}, check=True,
    ).stdout
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out)
    return [f.replace(" ", "T") + "Z" for f in found]


def _cron_to_systemd(expr: str, tz: str) -> str:
    m, h = expr.split()[:2]
    conv = lambda f: f.replace("*/", "0/")  # noqa: E731
    return f"*-*-* {conv(h)}:{conv(m)}:00 {tz}"


def is_jump(t: float, tz: str) -> bool:
    zone = load_zone(tz)
    return offset_at(zone, t - 1) < offset_at(zone, t)


def in_second_pass(t: float, tz: str) -> bool:
    """The clock showed this wall time before, an offset change ago."""
    zone = load_zone(tz)
    jump = timeline(zone).last_transition(t, 86400)
    return jump is not None and offset_at(zone, jump - 1) > offset_at(zone, jump) and \
        t - jump < offset_at(zone, jump - 1) - offset_at(zone, jump)


CASES = [
    # zone, cron, base (UTC), what happens in the window
    ("Europe/Berlin", "30 2 * * *", "2027-03-25T12:00:00", "spring gap"),
    ("Europe/Berlin", "30 2 * * *", "2027-10-28T12:00:00", "autumn repeat"),
    ("Europe/Berlin", "0 3 * * *", "2027-10-28T12:00:00", "autumn edge"),
    ("Europe/Berlin", "30 * * * *", "2027-03-27T22:00:00", "spring, wildcard hour"),
    ("Europe/Berlin", "*/20 * * * *", "2027-10-30T23:00:00", "autumn, wildcard"),
    ("America/New_York", "30 2 * * *", "2027-03-12T12:00:00", "spring gap"),
    ("America/New_York", "30 1 * * *", "2027-11-05T12:00:00", "autumn repeat"),
    ("America/New_York", "*/15 * * * *", "2027-11-07T04:00:00", "autumn, wildcard"),
    ("America/New_York", "0 0 * * *", "2027-03-12T12:00:00", "midnight, unaffected"),
    ("Australia/Lord_Howe", "15 2 * * *", "2027-10-01T00:00:00", "spring gap of 30 minutes"),
    ("Australia/Lord_Howe", "45 1 * * *", "2027-04-02T00:00:00", "autumn repeat of 30 minutes"),
    ("Australia/Lord_Howe", "*/10 * * * *", "2027-04-03T14:30:00", "autumn, wildcard"),
]


@pytest.mark.parametrize("tz, expr, base, what", CASES)
def test_agrees_with_systemd_except_the_documented_rule(tz, expr, base, what):
    n = 12
    mine = ours(expr, tz, base, n)
    theirs = systemd(_cron_to_systemd(expr, tz), base, n)
    horizon = min(mine[-1], theirs[-1])
    mine_w = [t for t in mine if t <= horizon]
    theirs_w = [t for t in theirs if t <= horizon]
    assert set(theirs_w) <= set(mine_w), f"{what}: we miss {set(theirs_w) - set(mine_w)}"
    wildcard = expr.split()[0].startswith("*") or expr.split()[1].startswith("*")
    for extra in set(mine_w) - set(theirs_w):
        t = ts(extra.replace("Z", "+00:00"))
        if wildcard:
            assert in_second_pass(t, tz), f"{what}: unexpected extra run at {extra}"
        else:
            assert is_jump(t, tz), f"{what}: unexpected extra run at {extra}"
    assert mine_w == sorted(set(mine_w)), "fire times must strictly increase"


def test_berlin_spring_gap_runs_at_the_jump():
    assert ours("30 2 * * *", "Europe/Berlin", "2027-03-26T12:00:00", 3) == [
        "2027-03-27T01:30:00Z",  # 02:30 CET
        "2027-03-28T01:00:00Z",  # no 02:30 that night: runs at the jump, 03:00 CEST
        "2027-03-29T00:30:00Z",  # 02:30 CEST
    ]


def test_berlin_autumn_repeat_runs_once_at_first_occurrence():
    assert ours("30 2 * * *", "Europe/Berlin", "2027-10-30T12:00:00", 2) == [
        "2027-10-31T00:30:00Z",  # 02:30 CEST, the first of two
        "2027-11-01T01:30:00Z",
    ]


def test_new_york_wildcard_follows_the_clock_in_the_repeated_hour():
    got = ours("*/30 * * * *", "America/New_York", "2027-11-07T04:50:00", 6)
    assert got == ["2027-11-07T05:00:00Z", "2027-11-07T05:30:00Z",  # 01:00, 01:30 EDT
                   "2027-11-07T06:00:00Z", "2027-11-07T06:30:00Z",  # 01:00, 01:30 EST
                   "2027-11-07T07:00:00Z", "2027-11-07T07:30:00Z"]


def test_lord_howe_half_hour_gap_and_repeat():
    assert ours("15 2 * * *", "Australia/Lord_Howe", "2027-10-01T16:00:00", 2) == [
        "2027-10-02T15:30:00Z",  # 02:15 doesn't exist on 3 October: runs at the jump (02:30 +11)
        "2027-10-03T15:15:00Z",
    ]
    assert ours("45 1 * * *", "Australia/Lord_Howe", "2027-04-03T00:00:00", 2) == [
        "2027-04-03T14:45:00Z",  # 01:45 +11, first of two
        "2027-04-04T15:15:00Z",
    ]


def test_at_in_zone_and_with_offset():
    s = parse_schedule("at 2026-12-01T09:00", "Europe/Berlin")
    assert iso(s.next_after(0)) == "2026-12-01T08:00:00Z"
    s = parse_schedule("at 2026-12-01T09:00-05:00", "Europe/Berlin")
    assert iso(s.next_after(0)) == "2026-12-01T14:00:00Z"
    with pytest.raises(InvalidInput, match=r"does not exist in Europe/Berlin: the clocks jump over it at "
                       r"2027-03-28 03:00:00\+02:00"):
        parse_schedule("at 2027-03-28T02:30", "Europe/Berlin")
    with pytest.raises(InvalidInput, match=r"happens twice .*2027-10-31T02:30\+02:00 or 2027-10-31T02:30\+01:00"):
        parse_schedule("at 2027-10-31T02:30", "Europe/Berlin")
    first = parse_schedule("at 2027-10-31T02:30+02:00", "Europe/Berlin")
    assert iso(first.next_after(0)) == "2027-10-31T00:30:00Z"
    with pytest.raises(InvalidInput, match="happens twice"):
        parse_schedule("at 2027-11-07T01:30", "America/New_York")


def test_intervals_ignore_dst():
    s = parse_schedule("every 1h", "Europe/Berlin", anchor=ts("2027-03-28T00:00:00"))
    got = [iso(t) for t in upcoming(s, ts("2027-03-28T00:00:00"), 3)]
    assert got == ["2027-03-28T01:00:00Z", "2027-03-28T02:00:00Z", "2027-03-28T03:00:00Z"]
