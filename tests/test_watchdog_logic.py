"""The watchdog's judgement and restart policy, with the OS replaced by a recording double."""

from __future__ import annotations


import os

from hermes_cron.contract.logs import Silent
from hermes_cron.contract.procinfo import ProcId
from hermes_cron_watchdog.core import Watchdog
from hermes_cron.contract.heartbeat import Heartbeat, TickError
from hermes_cron_watchdog.judge import FAILING, FOREIGN, GONE, HEALTHY, STALE, STARTING, Judge, Observation
from hermes_cron_watchdog.restarts import RestartBook

BOOT = "boot-a"


def hb(ticks: int, t: float, pid: int = 100, boot: str = BOOT, interval: float = 10.0, ok: float | None = None,
       failures: int = 0) -> Heartbeat:
    return Heartbeat(time=t, pid=pid, pid_start=1, boot_id=boot, ticks=ticks, tick_interval=interval, heartbeat_every=1,
                     interval_s=interval, last_ok_tick=t if ok is None else ok,
                     last_error=TickError(t, "StoreError", "broken") if failures else None,
                     consecutive_failures=failures, running=0, next_due=None, started_at=0.0, home="/h",
                     version="0")


def obs(heartbeat, pid=100, mono=0.0, boot=None, wall=1000.0, boot_id=BOOT) -> Observation:
    return Observation(heartbeat, pid, boot_id, mono, mono if boot is None else boot, wall)


def test_stale_only_after_the_content_stands_still_for_the_threshold():
    j = Judge()
    j.restart_grace(0.0)
    assert j.observe(obs(hb(1, 1000), mono=0)).state == HEALTHY
    assert j.observe(obs(hb(1, 1000), mono=19)).state == HEALTHY  # threshold = 2 x 10 s
    assert j.observe(obs(hb(2, 1010), mono=25)).state == HEALTHY  # it moved at 25
    assert j.observe(obs(hb(2, 1010), mono=44)).state == HEALTHY
    v = j.observe(obs(hb(2, 1010), mono=45.5))
    assert v.state == STALE and v.evidence["ticks"] == 2 and v.evidence["unmoved_s"] >= 20


def test_wall_clock_jumps_dont_count():
    j = Judge()
    j.restart_grace(0.0)
    j.observe(obs(hb(1, 1000), mono=0, wall=1000))
    assert j.observe(obs(hb(2, 1010), mono=10, wall=999_999)).state == HEALTHY
    assert j.observe(obs(hb(3, 1020), mono=20, wall=-5)).state == HEALTHY


def test_suspend_restarts_the_grace_period():
    j = Judge()
    j.restart_grace(0.0)
    j.observe(obs(hb(1, 1000), mono=0, boot=0))
    # 8 hours asleep: boot time jumps, monotonic barely moves; the heartbeat hasn't moved
    v = j.observe(obs(hb(1, 1000), mono=15, boot=15 + 8 * 3600))
    assert v.state == HEALTHY and v.slept > 8 * 3600 - 1
    assert j.observe(obs(hb(1, 1000), mono=30, boot=30 + 8 * 3600)).state == HEALTHY  # grace from 15
    assert j.observe(obs(hb(1, 1000), mono=36, boot=36 + 8 * 3600)).state == STALE


def test_heartbeat_from_an_earlier_boot_is_not_a_hang():
    j = Judge()
    v = j.observe(obs(hb(500, 10, boot="boot-old"), pid=None))
    assert v.state == GONE and "earlier boot" in v.reason
    j2 = Judge()
    j2.restart_grace(0.0)
    v = j2.observe(obs(hb(500, 10, boot="boot-old"), pid=200, mono=5))
    assert v.state == STARTING


def test_alive_but_failing():
    j = Judge()
    j.restart_grace(0.0)
    v = j.observe(obs(hb(5, 1000, ok=975, failures=3), mono=1))
    assert v.state == FAILING
    assert j.observe(obs(hb(6, 1010, ok=1005, failures=1), mono=11)).state == HEALTHY  # only 5 s


def test_backoff_doubles_and_the_burst_limit_gives_up():
    book = RestartBook(burst=5, window=1800, base=2, ceiling=300)
    assert book.decide(0) == ("restart", 0.0)
    book.record(0)
    assert book.decide(1)[0] == "backoff"
    assert book.decide(2)[0] == "restart"
    book.record(2)
    assert book.decide(5)[0] == "backoff"  # 4 s after the second
    for t in (6, 14, 30):
        assert book.decide(t)[0] == "restart"
        book.record(t)
    action, wait = book.decide(1000)
    assert action == "give-up" and wait > 0
    assert book.decide(1801)[0] == "restart"  # the first restart left the window


class FakeSystem:
    """Records what the watchdog asks of the OS; plays a daemon whose heartbeat we script."""

    def __init__(self, tmp_path):
        self.home = str(tmp_path)
        self.cron = str(tmp_path)
        self.t = 0.0
        self.hb: dict | None = None
        self.pid: int | None = 100
        self.calls: list[tuple] = []

    def mono(self): return self.t
    def boot(self): return self.t
    def wall(self): return 1000.0 + self.t
    def boot_id(self): return BOOT
    def heartbeat(self): return self.hb
    def any_heartbeat(self): return self.hb
    def pidfile(self): return None
    def daemon(self): return ProcId(self.pid, 1) if self.pid else None
    def stopped_on_purpose(self): return False
    def reap(self): pass
    def daemon_argv(self, info): return ["hermes-cron", "run"]
    home_uid = os.geteuid()
    file_owner = None

    def terminate(self, proc, timeout):
        self.calls.append(("terminate", proc.pid))
        self.pid = None
        return True

    def start(self, argv):
        self.calls.append(("start", tuple(argv)))
        self.pid = 101
        return 101

    def systemctl_restart(self, unit, user):
        self.calls.append(("systemctl", unit, user))
        return 0, ""

    state = ("active", "running")

    def systemctl_state(self, unit, user):
        return self.state



def test_a_hung_daemon_is_killed_and_started_again(tmp_path):
    fs = FakeSystem(tmp_path)
    dog = Watchdog(fs, Silent(), stale_after=5)
    dog.judge.restart_grace(0)
    fs.hb = hb(1, 1000)
    dog.check()
    fs.t = 6
    assert dog.check().state == STALE
    assert fs.calls == [("terminate", 100), ("start", ("hermes-cron", "run"))]


def test_under_systemd_it_restarts_the_unit(tmp_path):
    fs = FakeSystem(tmp_path)
    dog = Watchdog(fs, Silent(), stale_after=5, unit="hermes-cron.service", user=True)
    dog.judge.restart_grace(0)
    fs.hb = hb(1, 1000)
    dog.check()
    fs.t = 6
    dog.check()
    assert fs.calls == [("systemctl", "hermes-cron.service", True)]


def test_failing_daemon_gets_one_restart_then_a_report(tmp_path):
    fs = FakeSystem(tmp_path)
    dog = Watchdog(fs, Silent(), stale_after=5)
    dog.judge.restart_grace(0)
    for step in range(40):
        fs.t = step
        fs.hb = hb(step, 1000 + step, pid=fs.pid or 0, ok=900, failures=step + 1)
        dog.check()
    assert [c[0] for c in fs.calls] == ["terminate", "start"]
    assert dog.book.giving_up


def test_restart_counts_survive_the_watchdogs_own_restart(tmp_path):
    fs = FakeSystem(tmp_path)
    dog = Watchdog(fs, Silent(), stale_after=5)
    dog.book.record(fs.wall())
    dog.save()
    again = Watchdog(fs, Silent(), stale_after=5)
    again.load()
    assert len(again.book.recent(fs.wall())) == 1


def test_under_systemd_a_start_in_progress_is_left_to_systemd(tmp_path):
    fs = FakeSystem(tmp_path)
    dog = Watchdog(fs, Silent(), stale_after=5, unit="hermes-cron.service")
    dog.judge.restart_grace(0)
    fs.pid = None  # between the old daemon's exit and the new one's pidfile
    for state in (("activating", "start"), ("activating", "auto-restart"), ("deactivating", "stop-sigterm")):
        fs.state = state
        dog.check()
    assert fs.calls == []
    fs.state = ("inactive", "dead")  # stopped by an admin
    dog.check()
    assert fs.calls == []
    fs.state = ("failed", "failed")
    dog.check()
    assert fs.calls == [("systemctl", "hermes-cron.service", False)]


def test_a_daemon_waiting_for_another_tickers_lock_is_not_restarted(tmp_path):
    from hermes_cron.contract.heartbeat import LockWait
    from hermes_cron_watchdog.judge import WAITING

    fs = FakeSystem(tmp_path)
    dog = Watchdog(fs, Silent(), check_every=1.0)
    for step in range(40):  # far past the threshold: the heartbeat moves, the ticks wait
        fs.t = float(step)
        beat = hb(step, 1000 + step, ok=900)
        fs.hb = beat._replace(lock_wait=LockWait(950.0, 4242, "hermes cron tick"))
        v = dog.check()
        assert v.state == WAITING and "pid 4242 (hermes cron tick)" in v.reason
    assert fs.calls == [], "never restarted: a restart can't free someone else's lock"


def test_a_foreign_heartbeat_is_named_not_starting(tmp_path):
    from hermes_cron.contract.heartbeat import ForeignHeartbeat

    j = Judge()
    v = j.observe(Observation(None, 100, BOOT, 0.0, 0.0, 1000.0, ForeignHeartbeat(990.0, 77)))
    assert v.state == FOREIGN and "another ticker (pid 77), 10 s ago" in v.reason
    # ...but a daemon of ours that never writes its own is still found hung in the end
    assert j.observe(Observation(None, 100, BOOT, 700.0, 700.0, 1700.0, ForeignHeartbeat(1690.0, 77))).state == STALE
