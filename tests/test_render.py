"""The CLI's text, from data alone (cli/render.py): no command, no process."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

from hermes_cron.cli.render import age, clip, history_header, history_row, output_tail, run_status, size_text, status_lines
from hermes_cron.logic.run import Outcome, RunState


def run(**kw):
    base = dict(id=7, outcome=Outcome.SUCCEEDED, state=RunState.DONE, exit_code=0, signal=None, missed_count=None,
                duration=1.234, started_at=1_800_000_000.0, scheduled=1_800_000_000.0, job="backup", reason=None,
                job_spec=SimpleNamespace(tz="Europe/Berlin"))
    base.update(kw)
    return SimpleNamespace(**base)


def test_run_status():
    assert run_status(run()) == "succeeded"
    assert run_status(run(outcome=Outcome.FAILED, exit_code=3)) == "failed (exit 3)"
    assert run_status(run(outcome=Outcome.TIMED_OUT, exit_code=None, signal=9)) == "timed_out (signal 9)"
    assert run_status(run(outcome=Outcome.MISSED, exit_code=None, missed_count=4)) == "missed x4"
    assert run_status(run(outcome=None, state=RunState.HANDED, exit_code=None)) == "handed"


def test_age_and_clip():
    assert age(None) == "-" and age(0.25) == "0.2s" and age(90) == "1m30s"
    assert clip("short", 10) == "short" and clip("a-very-long-name", 6) == "a-ver…"


def test_history_row():
    # times in the job's zone, with the offset (2027-01-15 08:00 UTC is 09:00 in Berlin)
    assert history_row(run()) == "     7  2027-01-15 09:00:00+01:00 2027-01-15 09:00:00+01:00     1.23s  succeeded"
    assert history_row(run(duration=None, started_at=None, scheduled=None, outcome=Outcome.SKIPPED,
                           exit_code=None)).split() == ["7", "-", "-", "-", "skipped"]
    failed = history_row(run(outcome=Outcome.FAILED, exit_code=127, reason="command not found:\n  'x'"),
                         with_job=True)
    assert failed.split()[:2] == ["7", "backup"] and failed.endswith("failed (exit 127)       command not found: 'x'")
    assert history_header().split() == ["RUN", "SCHEDULED", "STARTED", "DURATION", "STATUS", "REASON"]
    assert history_header(with_job=True).split()[1] == "JOB"


def test_output_tail_and_sizes():
    assert output_tail(b"") == [] and output_tail(b"\n\n") == []
    assert output_tail(b"".join(b"line %d\n" % i for i in range(50)), lines=2) == ["line 48", "line 49"]
    assert output_tail(b"x" * 300, width=10) == ["xxxxxxxxx…"]
    assert size_text(1 << 20) == "1M (1048576 bytes)" and size_text(512 * 1024) == "512K (524288 bytes)"
    assert size_text(1500) == "1500 bytes" and size_text(1 << 30) == "1G (1073741824 bytes)"


def test_status_lines_not_running():
    report = {"running": False, "pid": None, "uptime_s": None, "home": "/h", "version": "1", "stale_pidfile": None,
              "last_error": None, "store_error": None, "jobs": {"enabled": 2, "paused": 1, "completed": 0},
              "invalid_jobs": [], "in_flight": [], "next": [{"job": "a", "at": "2027-01-15T08:00:00.000Z"}],
              "recent_failures": [{"status": "failed", "exit_code": 2, "signal": None, "ended": "2027-01-15T08:00:00.000Z", "job": "b",
                                   "run_id": 3}]}
    lines = status_lines(report, 3, 0.0)
    local = datetime.fromtimestamp(1_800_000_000).astimezone().isoformat(sep=" ", timespec="seconds")
    assert lines[0] == "hermes-cron:    not running"
    assert "jobs:           2 enabled, 1 paused, 0 completed" in lines
    assert "running:        none" in lines
    assert f"next:           {local}  a" in lines
    assert f"failures:       {local}  b run 3: failed (exit 2)" in lines
