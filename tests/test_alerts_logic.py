"""logic/alerts.py: which event a run's end makes, and who is told (pure)."""

from __future__ import annotations

import pytest

from hermes_cron.errors import InvalidInput
from hermes_cron.logic.alerts import Alerts, check_alerts, decide

ALL = Alerts(on_failure="f", on_success="s", notify=("http://h/a",))
CHANGE = Alerts(on_failure="f", on_success="s", notify=("http://h/a",), notify_on="change")


@pytest.mark.parametrize("outcome", ["failed", "timed_out", "interrupted", "lost", "missed"])
def test_failing_outcomes_tell_the_failure_hook_and_the_webhooks(outcome):
    assert decide(outcome, "ok", ALL) == ("failing", outcome, [("command", "f"), ("webhook", "http://h/a")])


def test_success_and_recovered():
    assert decide("succeeded", None, ALL) == ("ok", "succeeded", [("command", "s"), ("webhook", "http://h/a")])
    assert decide("succeeded", "failing", ALL)[1] == "recovered"
    assert decide("skipped", "failing", ALL) == (None, None, [])


def test_change_mode_tells_only_changes():
    assert decide("failed", None, CHANGE)[2], "the first failure ever is a change"
    assert decide("failed", "failing", CHANGE)[2] == []
    assert decide("succeeded", None, CHANGE)[2] == [], "a first success changes nothing anyone expected"
    assert decide("succeeded", "ok", CHANGE)[2] == []
    assert decide("succeeded", "failing", CHANGE) == ("ok", "recovered", [("command", "s"), ("webhook", "http://h/a")])
    assert decide("missed", "ok", CHANGE)[2]


def test_a_jobs_own_settings_win_over_the_defaults():
    a = Alerts.of({"on_failure": None, "notify": (), "notify_on": None, "hook_timeout": 5.0},
                  {"on_failure": "d", "notify": ("http://d/",), "notify_on": "change", "hook_timeout": 60.0})
    assert a == Alerts(on_failure="d", notify=("http://d/",), notify_on="change", hook_timeout=5.0)
    assert not Alerts.of({}, {}).any


@pytest.mark.parametrize("bad", [{"on_failure": ""}, {"on_failure": "a\0b"}, {"notify": "http://x/"},
                                 {"notify": ["ftp://x/"]}, {"notify": ["http://x/#f"]}, {"notify_on": "often"},
                                 {"hook_timeout": 0.5}, {"hook_timeout": True}, {"colour": "red"},
                                 {"notify": ["http://x/"] * 11}])
def test_settings_are_checked(bad):
    with pytest.raises(InvalidInput):
        check_alerts(bad, "defaults")


def test_a_webhook_may_carry_a_token_in_its_query():
    assert check_alerts({"notify": ["https://hooks.example/x?token=abc"]}, "d")["notify"] == (
        "https://hooks.example/x?token=abc",)
