"""The job commands, driven as a user would: through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os

import pytest

# Real commands in real processes, a few hundred ms each: in the full run, not the quick one.
pytestmark = pytest.mark.slow


def jobs_file(home) -> dict:
    return {j["name"]: j for j in json.load(open(home.jobs))["jobs"]}


def test_add_list_show_edit_pause_resume_remove(cli, home):
    r = cli("add", "backup", "--schedule", "30 2 * * *", "--tz", "Europe/Berlin", "--timeout", "1h",
            "--env", "A=1", "--env", "B=two words", "--cwd", "/tmp", "--overlap", "replace",
            "--misfire-grace", "5m", "--output-cap", "64K", "--keep-runs", "7", "--", "/bin/echo", "hi there")
    assert r.returncode == 0, r.stderr
    assert "next run" in r.stdout and "+01:00" in r.stdout
    job = jobs_file(home)["backup"]
    assert job["command"] == ["/bin/echo", "hi there"] and job["tz"] == "Europe/Berlin"
    assert job["timeout"] == 3600 and job["env"] == {"A": "1", "B": "two words"}
    assert job["overlap"] == "replace" and job["misfire_grace"] == 300 and job["output_cap"] == 65536
    assert job["keep_runs"] == 7 and job["cwd"] == "/tmp"

    r = cli("add", "shelly", "-s", "every 5m", "--shell", "--", "echo $HOME | wc -c")
    assert r.returncode == 0, r.stderr
    assert jobs_file(home)["shelly"]["command"] == ["echo $HOME | wc -c"] and jobs_file(home)["shelly"]["shell"]

    listed = json.loads(cli("list", "--json", check=True).stdout)
    assert [j["name"] for j in listed] == ["backup", "shelly"]
    assert listed[0]["state"] == "enabled" and listed[0]["next_run"].endswith("Z")
    text = cli("list", check=True).stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "backup" in text and "30 2 * * *" in text

    shown = json.loads(cli("show", "backup", "--json", check=True).stdout)
    assert shown["name"] == "backup" and shown["timeout"] == 3600
    assert "next runs:" in cli("show", "backup", check=True).stdout

    assert cli("edit", "backup", "--schedule", "0 3 * * *", "--unset-env", "A", "--env", "C=3").returncode == 0
    job = jobs_file(home)["backup"]
    assert job["schedule"] == "0 3 * * *" and job["env"] == {"B": "two words", "C": "3"}
    assert job["timeout"] == 3600, "unnamed options don't change"
    assert cli("edit", "backup", "--no-timeout").returncode == 0
    assert jobs_file(home)["backup"]["timeout"] is None
    assert cli("edit", "backup", "--", "/bin/true").returncode == 0
    assert jobs_file(home)["backup"]["command"] == ["/bin/true"]

    assert cli("pause", "backup").returncode == 0
    assert json.loads(cli("show", "backup", "--json").stdout)["state"] == "paused"
    assert json.loads(cli("show", "backup", "--json").stdout)["next_run"] is None
    assert cli("resume", "backup").returncode == 0
    assert json.loads(cli("show", "backup", "--json").stdout)["state"] == "enabled"

    assert cli("remove", "shelly").returncode == 0
    assert list(jobs_file(home)) == ["backup"]


@pytest.mark.parametrize("args, code, fragment", [
    (["add", "a", "-s", "61 * * * *", "--", "true"], 2, "minute field"),
    (["add", "a", "-s", "* * * * *", "--tz", "Mars/Olympus", "--", "true"], 2, "unknown time zone"),
    (["add", "a/b", "-s", "@daily", "--", "true"], 2, "not allowed"),
    (["add", "..", "-s", "@daily", "--", "true"], 2, "not allowed"),
    (["add", "x" * 65, "-s", "@daily", "--", "true"], 2, "not allowed"),
    (["add", "a", "-s", "@daily", "--", ""], 2, "command is empty"),
    (["add", "a", "-s", "@daily"], 2, "COMMAND"),
    (["add", "a", "-s", "at 2020-01-01T00:00", "--", "true"], 2, "in the past"),
    (["add", "a", "-s", "@daily", "--timeout", "5 minutes", "--", "true"], 2, "not a duration"),
    (["add", "a", "-s", "every 1x", "--", "true"], 2, "not a duration"),
    (["add", "a", "-s", "@daily", "--cwd", "/no/such/dir", "--", "true"], 2, "does not exist"),
    (["add", "a", "-s", "0 0 31 2 *", "--", "true"], 2, "never fires"),
    (["add", "dup", "-s", "@daily", "--", "true"], 4, "already exists"),
    (["edit", "ghost", "--timeout", "5s"], 3, "no job named"),
    (["remove", "ghost"], 3, "no job named"),
    (["pause", "ghost"], 3, "no job named"),
    (["show", "ghost"], 3, "no job named"),
    (["edit", "dup", "--schedule", "99 * * * *"], 2, "minute field"),
])
def test_bad_input_is_one_line_nonzero_and_changes_nothing(cli, home, args, code, fragment):
    assert cli("add", "dup", "-s", "@daily", "--", "true").returncode == 0
    before = open(home.jobs, "rb").read()
    r = cli(*args)
    assert r.returncode == code, r.stderr
    assert fragment in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert open(home.jobs, "rb").read() == before


def test_next_previews_with_offsets(cli):
    r = cli("next", "30 2 * * *", "--tz", "Europe/Berlin", "--from", "2027-03-26T12:00", "--count", "3")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2027-03-27 02:30:00+01:00")
    assert lines[1].startswith("2027-03-28 03:00:00+02:00")  # the skipped 02:30 runs at the jump
    assert lines[2].startswith("2027-03-29 02:30:00+02:00")
    data = json.loads(cli("next", "@hourly", "--tz", "UTC", "--from", "2027-01-01T00:10", "-n", "2", "--json").stdout)
    assert [t["utc"] for t in data["times"]] == ["2027-01-01T01:00:00.000Z", "2027-01-01T02:00:00.000Z"]
    assert cli("next", "bogus").returncode == 2


def test_export_gives_a_readable_copy(cli, home, tmp_path):
    cli("add", "a", "-s", "@daily", "--", "true", check=True)
    out = tmp_path / "export.json"
    assert cli("export", "-o", str(out)).returncode == 0
    data = json.loads(out.read_text())
    assert data["jobs"][0]["name"] == "a" and data["jobs"][0]["next_run"]


def test_home_option_overrides_environment(cli, tmp_path):
    other = tmp_path / "other"
    assert cli("--home", str(other), "add", "x", "-s", "@daily", "--", "true").returncode == 0
    assert cli("list", "--home", str(other), "--json").stdout.count('"x"') == 1
    assert os.path.exists(other / "cron" / "hermes-cron-jobs.json")
