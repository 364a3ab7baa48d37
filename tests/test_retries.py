"""--retries: a scheduled slot whose run failed gets further attempts, each started once, after
an exponential backoff; never once the job's next slot has come; a pending retry outlives
kill -9 of the daemon like any claimed run."""

from __future__ import annotations

import json

import pytest

from conftest import wait_for
from daemon_harness import runs
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.policy import retry_at
from test_daemon import add, daemons  # noqa: F401  (fixture)


def soon(seconds: float = 2.0) -> str:
    """A one-shot schedule a moment ahead: one slot, no next one to cut the retries short."""
    from datetime import datetime, timedelta, timezone

    at = (datetime.now(timezone.utc) + timedelta(seconds=seconds)).replace(microsecond=0)
    return f"at {at.isoformat()}"


def test_backoff_cap_and_the_schedule_winning():
    job = Job("r", ("false",), "every 1h", "UTC", retries=3, retry_delay=10.0, retry_max_delay=25.0)
    assert retry_at(job, 1, "failed", 100.0, None, 0.0) == (110.0, "")
    assert retry_at(job, 2, "timed_out", 100.0, None, 0.0) == (120.0, "")
    assert retry_at(job, 3, "failed", 100.0, None, 0.0) == (125.0, "")  # capped
    assert retry_at(job, 4, "failed", 100.0, None, 0.0)[0] is None  # none left
    assert retry_at(job, 1, "failed", 100.0, 105.0, 0.0) == (None, "its next slot comes before the retry would")
    assert retry_at(job, 1, "interrupted", 100.0, None, 0.0) == (None, "")
    assert 110.0 <= retry_at(job, 1, "failed", 100.0, None, 0.99)[0] <= 111.0  # jitter up to 10%


@pytest.mark.slow
def test_a_slot_that_fails_twice_then_succeeds(cli, home, daemons, tmp_path):
    counter = tmp_path / "n"
    script = f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ]'
    add(cli, "flaky", soon(), "sh", "-c", script, retries="3", retry_delay="0.3s")
    d = daemons()
    d.wait_started()
    done = wait_for(lambda: [r for r in runs(home, "flaky") if r.outcome == "succeeded"], 20, what="a success")
    assert d.stop() == 0
    slot = done[0].scheduled
    attempts = sorted((r.attempt, str(r.outcome)) for r in runs(home, "flaky") if r.scheduled == slot)
    assert attempts == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    hist = json.loads(cli("history", "flaky", "--json").stdout)
    assert {h["attempt"] for h in hist if h["status"] == "succeeded"} == {3}
    assert counter.read_text().strip() == "3", "each attempt started once"


@pytest.mark.slow
def test_a_pending_retry_outlives_kill_9(cli, home, daemons, tmp_path):
    marker = tmp_path / "attempts"
    add(cli, "once", soon(), "sh", "-c", f'echo x >> {marker}; [ $(wc -l < {marker}) -ge 2 ]',
        retries="1", retry_delay="3s")
    d = daemons()
    d.wait_started()
    wait_for(lambda: d.events("job.retry"), 15, what="a retry claimed")
    d.kill9()
    d2 = daemons()
    d2.wait_started()
    wait_for(lambda: [r for r in runs(home, "once") if r.attempt == 2 and r.state == "done"], 20,
             what="the retry run, adopted")
    assert d2.stop() == 0
    assert marker.read_text().count("x") >= 2
