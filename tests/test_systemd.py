"""hermes-cron under a real systemd: scripts/install-systemd, the units, systemd's watchdog and
hermes-cron-watchdog, stop and restart with jobs in flight, the journal, a --user install.

One throwaway systemd (tests/systemd_harness.py) serves the whole module; the tests run in
order on it. For speed, drop-ins give the daemon a 1 s tick and the watchdog a 1 s check
interval; everything else is the units as installed."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from systemd_harness import PATH, Systemd, unavailable, wait_until

pytestmark = [pytest.mark.systemd, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SRC = "/usr/local/src/hermes-cron"  # the repository, copied in: a clone as a user would have it
INSTALL = f"{SRC}/scripts/install-systemd"
BIN = "/opt/hermes-cron/venv/bin"
HOME = "/var/lib/hermes-cron"
DAEMON, WATCHDOG = "hermes-cron.service", "hermes-cron-watchdog.service"
UNIT_DIR = "/etc/systemd/system"
RUN_FAST = "run --log-format auto --tick-interval 1 --heartbeat-every 1"
WATCH_FAST = "--check-every 1"


@pytest.fixture(scope="module")
def sd():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    s = Systemd()
    s.boot()
    try:
        s.copy_tree(str(REPO), SRC, ignore=(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                            ".pytest_cache"))
        # Drop-ins first, so the installer starts the daemon with a 1 s tick. The watchdog's
        # own WatchdogSec is cut to 10 s: it must keep petting it through every test.
        dropin(s, DAEMON, "10-test-speed", f"[Service]\nExecStart=\nExecStart={BIN}/hermes-cron {RUN_FAST}\n",
               reload=False)
        dropin(s, WATCHDOG, "10-test-speed", f"[Service]\nExecStart=\nExecStart={BIN}/hermes-cron-watchdog "
               f"--systemd-unit {DAEMON} {WATCH_FAST}\nWatchdogSec=10s\n", reload=False)
        s.first_install = s.run(INSTALL, "--system", timeout=300).stdout  # type: ignore[attr-defined]
        yield s
    finally:
        s.shutdown()


# helpers ----------------------------------------------------------------------------------

def dropin(sd: Systemd, unit: str, name: str, text: str, reload: bool = True) -> None:
    sd.write(f"{UNIT_DIR}/{unit}.d/{name}.conf", text)
    if reload:
        sd.run("systemctl", "daemon-reload")


def cli(sd: Systemd, *args: str) -> str:
    """hermes-cron as root on the system home: it acts as the hermes-cron user."""
    return sd.run(f"{BIN}/hermes-cron", *args, env={"HERMES_HOME": HOME}).stdout


def history(sd: Systemd, job: str, user: str | None = None) -> list[dict]:
    env = {} if user else {"HERMES_HOME": HOME}
    return json.loads(sd.run(f"{BIN}/hermes-cron", "history", job, "--json", "--limit", "0", env=env,
                             user=user).stdout)


def trigger(sd: Systemd, job: str) -> int:
    out = cli(sd, "trigger", job)
    return int(re.search(r"run (\d+)", out).group(1))  # type: ignore[union-attr]


def run_of(sd: Systemd, job: str, run_id: int) -> dict:
    return next(r for r in history(sd, job) if r["id"] == run_id)


def show(sd: Systemd, unit: str, user: str | None = None) -> dict[str, str]:
    return sd.show(unit, "ActiveState", "SubState", "MainPID", "NRestarts", "Result", "StatusText", user=user)


def wait_running(sd: Systemd, unit: str, not_pid: str | None = None, timeout: float = 30,
                 user: str | None = None) -> dict[str, str]:
    """Wait until `unit` is active and running (with a main pid other than `not_pid`)."""
    def ready() -> dict[str, str] | None:
        p = show(sd, unit, user)
        ok = p["ActiveState"] == "active" and p["SubState"] == "running" and p["MainPID"] not in ("0", not_pid)
        return p if ok else None

    return wait_until(ready, timeout, f"{unit} running (not pid {not_pid})")  # type: ignore[return-value]


def cursor(sd: Systemd) -> str:
    return json.loads(sd.run("journalctl", "-n", "1", "-o", "json").stdout)["__CURSOR"]


def journal(sd: Systemd, *match: str, after: str | None = None) -> list[str]:
    """Message lines (journalctl -o cat) of the entries matching `match` (FIELD=value), only
    those after the cursor `after` if given."""
    if after is None:
        return sd.run("journalctl", "--no-pager", "-o", "cat", *match).stdout.splitlines()
    # journalctl 252 drops the first match after the cursor when it filters by field (it skips
    # one entry past the cursor even if the cursor's own entry didn't match), so filter here.
    want = [m.split("=", 1) for m in match]
    entries = (json.loads(line) for line in
               sd.run("journalctl", "--no-pager", "-o", "json", f"--after-cursor={after}").stdout.splitlines())
    return [e["MESSAGE"] for e in entries if all(e.get(k) == v for k, v in want) and isinstance(e.get("MESSAGE"), str)]


def events(lines: list[str], name: str) -> list[str]:
    return [line for line in lines if line.startswith(f"event='{name}'")]


def fresh_start(sd: Systemd, unit: str = DAEMON) -> dict[str, str]:
    """The unit running, with its start limit counter reset (the tests restart it a lot)."""
    sd.run("systemctl", "reset-failed", unit, check=False)
    sd.run("systemctl", "start", unit)
    return wait_running(sd, unit)


# the tests --------------------------------------------------------------------------------

def test_install_creates_user_venv_and_running_units(sd):
    out = sd.first_install
    for line in ("created the system user hermes-cron", "created the virtual environment /opt/hermes-cron/venv",
                 f"installed {UNIT_DIR}/{DAEMON}", f"installed {UNIT_DIR}/{WATCHDOG}", f"started {DAEMON}",
                 f"started {WATCHDOG}"):
        assert line in out, out
    for unit in (DAEMON, WATCHDOG):
        assert sd.run("systemctl", "is-enabled", unit).stdout.strip() == "enabled"
    daemon = wait_running(sd, DAEMON)
    assert re.match(r"\d+ ticks, last ok, 0 running", daemon["StatusText"]), daemon
    assert wait_running(sd, WATCHDOG)["StatusText"].startswith("daemon healthy")
    units = sd.show(DAEMON, "Type", "NotifyAccess", "WatchdogUSec", "Restart", "KillMode", "User",
                    "StateDirectoryMode", "UMask", "Environment")
    assert units == {"Type": "notify", "NotifyAccess": "main", "WatchdogUSec": "3min", "Restart": "on-failure",
                     "KillMode": "process", "User": "hermes-cron", "StateDirectoryMode": "0700", "UMask": "0077",
                     "Environment": f"HERMES_HOME={HOME}"}
    assert sd.show(WATCHDOG, "User", "Restart", "Environment") == {
        "User": "", "Restart": "always", "Environment": f"HERMES_HOME={HOME}"}
    # The daemon's files belong to hermes-cron; the interpreter is one it can read.
    assert sd.run("stat", "-c", "%U %a", HOME, f"{HOME}/cron").stdout.split() == ["hermes-cron", "700"] * 2
    assert sd.run("readlink", "-f", f"{BIN}/python").stdout.strip().startswith("/usr/")


def test_install_again_changes_nothing(sd):
    before = show(sd, DAEMON)
    out = sd.run(INSTALL, "--system", timeout=300).stdout
    for line in ("already has this hermes-cron", f"unchanged {UNIT_DIR}/{DAEMON}", f"unchanged {UNIT_DIR}/{WATCHDOG}",
                 f"{DAEMON} was already running", f"{WATCHDOG} was already running"):
        assert line in out, out
    assert "created" not in out and "restarted" not in out, out
    assert show(sd, DAEMON)["MainPID"] == before["MainPID"]


def test_units_pass_systemd_analyze_verify(sd):
    # It exits 0 even on unknown keys or bad values: any output at all is a finding.
    proc = sd.run("systemd-analyze", "verify", "--man=no", f"{UNIT_DIR}/{DAEMON}", f"{UNIT_DIR}/{WATCHDOG}",
                  check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_ticks_run_jobs_as_the_hermes_cron_user(sd):
    out = cli(sd, "add", "ping", "--schedule", "every 1s", "--shell", "--", "id -un; test $HOME = " + HOME)
    assert out.startswith("added ping"), out
    try:
        wait_until(lambda: sum(r["status"] == "succeeded" for r in history(sd, "ping")) >= 2, 20,
                   "two succeeded runs of ping")
    finally:
        cli(sd, "remove", "ping")
    assert cli(sd, "logs", "ping").strip() == "hermes-cron"
    # Files the CLI wrote as root on the system home belong to hermes-cron (it dropped to it).
    assert sd.run("stat", "-c", "%U", f"{HOME}/cron/hermes-cron-jobs.json").stdout.strip() == "hermes-cron"


def test_journal_reads_as_key_value_events(sd):
    lines = journal(sd, f"_SYSTEMD_UNIT={DAEMON}")
    assert events(lines, "daemon.started") and events(lines, "job.finished"), lines[-20:]
    bad = [line for line in lines if not line.startswith("event='")]
    assert not bad, bad[:10]
    # journald stamps each line: no timestamp of our own beside it.
    assert not [line for line in lines if "timestamp=" in line]
    # `-u` shows our lines interleaved with systemd's about the unit.
    assert events(journal(sd, "-u", "hermes-cron"), "daemon.started")


def test_systemd_watchdog_restarts_a_frozen_daemon(sd):
    sd.run("systemctl", "stop", WATCHDOG)  # this one is systemd's own watchdog's, alone
    try:
        dropin(sd, DAEMON, "20-watchdog", "[Service]\nWatchdogSec=5s\n")
        sd.run("systemctl", "reset-failed", DAEMON, check=False)
        sd.run("systemctl", "restart", DAEMON)
        before = wait_running(sd, DAEMON)
        assert sd.show(DAEMON, "WatchdogUSec")["WatchdogUSec"] == "5s"
        mark = cursor(sd)
        sd.run("systemctl", "kill", "--signal=SIGSTOP", "--kill-who=main", DAEMON)
        t0 = time.monotonic()
        wait_until(lambda: int(show(sd, DAEMON)["NRestarts"]) > int(before["NRestarts"]), 30,
                   "systemd to restart the frozen daemon")
        after = wait_running(sd, DAEMON, not_pid=before["MainPID"])
        took = time.monotonic() - t0
        assert after["StatusText"], after
        said = "\n".join(journal(sd, f"UNIT={DAEMON}", after=mark))
        assert "Watchdog timeout" in said, said
        assert took < 5 + 2 + 10, took  # WatchdogSec + RestartSec + slack
    finally:
        sd.run("systemctl", "start", WATCHDOG)


def test_hermes_cron_watchdog_restarts_a_frozen_daemon(sd):
    dropin(sd, DAEMON, "20-watchdog", "[Service]\nWatchdogSec=0\n")  # systemd's watchdog off
    # Restarted with the watchdog out of the way: it may take a daemon that is starting for
    # one that is gone (see the report on watchdog/core.py).
    sd.run("systemctl", "stop", WATCHDOG)
    sd.run("systemctl", "reset-failed", DAEMON, check=False)
    sd.run("systemctl", "restart", DAEMON)
    sd.run("systemctl", "start", WATCHDOG)
    before = wait_running(sd, DAEMON)
    assert sd.show(DAEMON, "WatchdogUSec")["WatchdogUSec"] == "0"
    wait_until(lambda: show(sd, WATCHDOG)["StatusText"].startswith("daemon healthy"), 15, "the watchdog to see it")
    mark = cursor(sd)
    sd.run("systemctl", "kill", "--signal=SIGSTOP", "--kill-who=main", DAEMON)
    after = wait_running(sd, DAEMON, not_pid=before["MainPID"], timeout=30)
    said = journal(sd, f"_SYSTEMD_UNIT={WATCHDOG}", after=mark)
    assert events(said, "watchdog.stale") and events(said, "watchdog.restart"), said
    assert "via='systemd'" in events(said, "watchdog.restart")[0]
    assert after["StatusText"], after
    # The watchdog kept petting its own systemd watchdog (10 s here) through all of it.
    assert show(sd, WATCHDOG)["NRestarts"] == "0"
    # Its sandbox still lets it keep its restart counts in the daemon's home, as hermes-cron's.
    assert not events(journal(sd, f"_SYSTEMD_UNIT={WATCHDOG}"), "watchdog.state_unwritable")
    assert sd.run("stat", "-c", "%U", f"{HOME}/cron/.watchdog.json").stdout.strip() == "hermes-cron"
    sd.path(f"{UNIT_DIR}/{DAEMON}.d/20-watchdog.conf").unlink()
    sd.run("systemctl", "daemon-reload")


def test_stop_is_clean_and_a_running_job_goes_on(sd):
    fresh_start(sd)
    cli(sd, "add", "slow", "--schedule", "every 1h", "--shell", "--", "echo $$ > /tmp/slow.pid; sleep 3; exit 3")
    run_id = trigger(sd, "slow")
    wait_until(lambda: run_of(sd, "slow", run_id)["state"] == "running"
               and sd.path("/tmp/slow.pid").exists(), 10, "slow to run")
    job_pid = sd.path("/tmp/slow.pid").read_text().strip()
    mark = cursor(sd)
    t0 = time.monotonic()
    sd.run("systemctl", "stop", DAEMON)
    took = time.monotonic() - t0
    stopped = show(sd, DAEMON)
    assert (stopped["ActiveState"], stopped["Result"]) == ("inactive", "success"), stopped
    assert took < 3, took
    assert sd.run("kill", "-0", job_pid, check=False).returncode == 0, "the job died with the daemon"
    # The job runs to its end; meanwhile the watchdog leaves the stopped unit alone.
    wait_until(lambda: sd.run("kill", "-0", job_pid, check=False).returncode != 0, 15, "slow to end")
    assert show(sd, DAEMON)["ActiveState"] == "inactive"
    assert not events(journal(sd, f"_SYSTEMD_UNIT={WATCHDOG}", after=mark), "watchdog.restart")
    fresh_start(sd)
    run = wait_until(lambda: (r := run_of(sd, "slow", run_id))["state"] == "done" and r, 15, "slow's record")
    assert (run["status"], run["exit_code"]) == ("failed", 3), run


def test_restart_keeps_a_running_job_and_the_new_daemon_adopts_it(sd):
    before = fresh_start(sd)
    cli(sd, "add", "long", "--schedule", "every 1h", "--shell", "--", "sleep 3; echo finished")
    run_id = trigger(sd, "long")
    wait_until(lambda: run_of(sd, "long", run_id)["state"] == "running", 10, "long to run")
    mark = cursor(sd)
    sd.run("systemctl", "restart", DAEMON)
    wait_running(sd, DAEMON, not_pid=before["MainPID"])
    assert run_of(sd, "long", run_id)["state"] == "running"
    run = wait_until(lambda: (r := run_of(sd, "long", run_id))["state"] == "done" and r, 15, "long's record")
    assert (run["status"], run["exit_code"]) == ("succeeded", 0), run
    assert cli(sd, "logs", "long", "--run", str(run_id)) == "finished\n"
    # The new daemon adopted the run at its first tick, before it said READY=1.
    adopted = events(journal(sd, f"_SYSTEMD_UNIT={DAEMON}", after=mark), "job.adopted")
    assert [line for line in adopted if f"run_id={run_id} " in line], adopted


def test_user_install(sd):
    """A --user install for alice, in her own systemd --user, started as at her login."""
    # A uid free on this machine (the container sees the host's users): 1001 unless taken.
    uid = next(u for u in range(1001, 60000) if sd.run("getent", "passwd", str(u), check=False).returncode != 0)
    sd.run("useradd", "--create-home", "--uid", str(uid), "alice")
    sd.run("systemctl", "start", "dbus.socket", "systemd-logind.service", f"user@{uid}.service")
    units = "/home/alice/.config/systemd/user"
    for unit, text in ((DAEMON, f"[Service]\nExecStart=\nExecStart={BIN}/hermes-cron {RUN_FAST}\nWatchdogSec=0\n"),
                       (WATCHDOG, f"[Service]\nExecStart=\nExecStart={BIN}/hermes-cron-watchdog --systemd-unit "
                                  f"{DAEMON} --user {WATCH_FAST}\n")):
        sd.run("sh", "-c", f'mkdir -p "$0" && cat > "$0/10-test-speed.conf"', f"{units}/{unit}.d", input=text,
               user="alice")
    # No --bindir: the installer finds hermes-cron on alice's PATH.
    out = sd.run(INSTALL, "--user", user="alice", env={"PATH": f"{BIN}:{PATH}"}).stdout
    assert f"installed {units}/{DAEMON}" in out and f"started {WATCHDOG}" in out, out
    assert "loginctl enable-linger alice" in out
    assert f"ExecStart={BIN}/hermes-cron run" in sd.path(f"{units}/{DAEMON}").read_text()
    proc = sd.run("systemd-analyze", "--user", "verify", "--man=no", f"{units}/{DAEMON}", f"{units}/{WATCHDOG}",
                  user="alice", check=False)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")
    before = wait_running(sd, DAEMON, user="alice")
    wait_running(sd, WATCHDOG, user="alice")
    assert sd.show(DAEMON, "Environment", user="alice")["Environment"] == "HERMES_HOME=/home/alice/.hermes"

    # Her jobs, in her default home, run as her.
    sd.run(f"{BIN}/hermes-cron", "add", "mine", "--schedule", "every 1s", "--", "id", "-un", user="alice")
    wait_until(lambda: any(r["status"] == "succeeded" for r in history(sd, "mine", user="alice")), 15,
               "alice's job to run")
    sd.run(f"{BIN}/hermes-cron", "remove", "mine", user="alice")

    # Her watchdog restarts her frozen daemon through systemctl --user.
    wait_until(lambda: show(sd, WATCHDOG, user="alice")["StatusText"].startswith("daemon healthy"), 15,
               "alice's watchdog to see her daemon")
    mark = cursor(sd)
    sd.run("systemctl", "--user", "kill", "--signal=SIGSTOP", "--kill-who=main", DAEMON, user="alice")
    wait_running(sd, DAEMON, not_pid=before["MainPID"], user="alice")
    said = journal(sd, f"_SYSTEMD_USER_UNIT={WATCHDOG}", after=mark)
    assert events(said, "watchdog.restart"), said

    out = sd.run(INSTALL, "--user", "--uninstall", user="alice").stdout
    assert f"removed {units}/{DAEMON}" in out and f"removed {units}/{WATCHDOG}" in out, out
    assert sd.show(DAEMON, "LoadState", user="alice")["LoadState"] == "not-found"
    assert sd.path("/home/alice/.hermes/cron/hermes-cron-jobs.json").exists()


def test_uninstall_keeps_the_data(sd):
    out = sd.run(INSTALL, "--system", "--uninstall").stdout
    assert f"removed {UNIT_DIR}/{DAEMON}" in out and f"removed {UNIT_DIR}/{WATCHDOG}" in out, out
    assert "removed /opt/hermes-cron/venv" in out, out
    for unit in (DAEMON, WATCHDOG):
        props = sd.show(unit, "LoadState", "ActiveState")
        assert props == {"LoadState": "not-found", "ActiveState": "inactive"}, (unit, props)
    assert sd.path(f"{HOME}/cron/hermes-cron-jobs.json").exists()
    assert "slow" in sd.path(f"{HOME}/cron/hermes-cron-jobs.json").read_text()
    again = sd.run(INSTALL, "--system", "--uninstall").stdout
    assert "no hermes-cron units" in again, again
