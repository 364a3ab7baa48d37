"""`hermes-cron import`: a user crontab as crontab(5) means it (environment lines, CRON_TZ,
SHELL, macros, `%` as standard input), refused by line number where it can't be expressed, with
stable names; and an `export` restored, so export and import round-trip."""

from __future__ import annotations

import json

import pytest

from hermes_cron.logic.crontab import parse_crontab, split_percent

CRONTAB = """\
# m h dom mon dow command
SHELL=/bin/sh
MAILTO=ops@example.com
PATH=/usr/local/bin:/usr/bin:/bin
GREETING = "hello there"

*/5 * * * *  /usr/bin/backup --fast
CRON_TZ=Europe/Paris
30 2 * * 1-5 echo "$GREETING" > /tmp/x
@reboot      /usr/local/bin/warmup
@daily       mail -s report root%line one%line two\\% done
"""


def test_a_crontab_reads_as_cron_reads_it():
    p = parse_crontab(CRONTAB, "UTC", 1_800_000_000.0)
    assert not p.errors
    assert [n for n, _ in p.jobs] == [7, 9, 10, 11]
    backup, greet, warm, mail = (job for _, job in p.jobs)
    assert backup.schedule == "*/5 * * * *" and backup.tz == "UTC" and backup.shell
    assert backup.command == ("/usr/bin/backup --fast",)
    assert dict(backup.env) == {"PATH": "/usr/local/bin:/usr/bin:/bin", "GREETING": "hello there"}
    assert greet.tz == "Europe/Paris" and greet.schedule == "30 2 * * 1-5"
    assert warm.schedule == "@reboot"
    assert mail.command == ("printf %s 'line one\nline two% done' | ( mail -s report root )",)
    assert [why for _, why in p.notes] == ["MAILTO=ops@example.com is not honoured: each run's output is in "
                                           "`hermes-cron logs`"]
    again = parse_crontab(CRONTAB, "UTC", 1_900_000_000.0)
    assert [j.name for _, j in again.jobs] == [j.name for _, j in p.jobs], "names are stable"
    assert backup.name.startswith("backup-")


def test_percent_as_crontab_5():
    assert split_percent("date +\\%s") == ("date +%s", None)
    assert split_percent("cat%a%b") == ("cat", "a\nb")
    assert split_percent("cat%") == ("cat", "")


def test_another_shell_runs_the_command():
    p = parse_crontab("SHELL=/bin/bash\n* * * * * echo {a,b}\n", "UTC", 1_800_000_000.0)
    [(_, job)] = p.jobs
    assert job.command == ("/bin/bash", "-c", "echo {a,b}") and not job.shell


@pytest.mark.parametrize("line, why", [
    ("61 * * * * true", "minute"),
    ("* * * * *", "not a job line"),
    ("@fortnightly true", "macro"),
    ("CRON_TZ=Mars/Olympus\n* * * * * true", "zone"),
])
def test_what_cant_be_expressed_is_refused_by_line(line, why):
    p = parse_crontab(f"# head\n{line}\n", "UTC", 1_800_000_000.0)
    assert p.errors and p.errors[0][0] == line.count("\n") + 2 and why in p.errors[0][1].lower(), p.errors


def test_import_adds_once_and_export_round_trips(cli, home, tmp_path):
    crontab = tmp_path / "crontab"
    crontab.write_text("*/5 * * * * /usr/bin/true\n@daily echo hi%there\n")
    r = cli("import", "crontab", str(crontab), "--dry-run")
    assert r.returncode == 0 and "dry run: 2 job(s) would be added" in r.stdout, r.stderr
    assert "no jobs" in cli("list").stdout
    r = cli("import", "crontab", str(crontab))
    assert r.returncode == 0 and "added 2 job(s)" in r.stdout, r.stderr
    r = cli("import", "crontab", str(crontab))
    assert "added 0 job(s), 2 already there" in r.stdout
    bad = tmp_path / "bad"
    bad.write_text("* * * * * true\n99 * * * * false\n")
    r = cli("import", "crontab", str(bad))
    assert r.returncode == 2 and "line 2" in r.stderr
    assert cli("add", "paused", "-s", "every 1h", "--paused", "--timeout", "5m", "--", "echo", "x").returncode == 0
    exported = cli("export").stdout
    env_home = str(tmp_path / "other" / "hermes")
    (tmp_path / "export.json").write_text(exported)
    r = cli("--home", env_home, "import", str(tmp_path / "export.json"))
    assert r.returncode == 0 and "added 3 job(s)" in r.stdout, r.stdout + r.stderr
    again = json.loads(cli("--home", env_home, "export").stdout)["jobs"]
    before = json.loads(exported)["jobs"]
    keys = ("name", "command", "schedule", "tz", "shell", "enabled", "timeout", "env", "anchor", "created")
    assert [{k: j[k] for k in keys} for j in again] == [{k: j[k] for k in keys} for j in before]
