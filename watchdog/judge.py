"""Judging a daemon from its heartbeat and its process. Pure: clocks come in as arguments.

The heartbeat counts as stale when its content (pid, tick count, time) has not moved for the
threshold, measured on the watchdog's own monotonic clock, never by the file's mtime or the
wall clock. If the machine slept (CLOCK_BOOTTIME ran ahead of CLOCK_MONOTONIC), the grace
period starts again: a closed laptop lid is not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hermes_cron.contract.heartbeat import ForeignHeartbeat, Heartbeat, stale_threshold

HEALTHY, STARTING, STALE, GONE, FAILING = "healthy", "starting", "stale", "gone", "failing"
WAITING = "waiting"  # alive, ticks waiting for another ticker's tick lock: a restart can't help
FOREIGN = "foreign"  # the heartbeat file holds another ticker's heartbeat, not this daemon's
SUSPEND_SLACK = 1.0  # boot time ahead of monotonic time by more than this means we slept


@dataclass(frozen=True)
class Observation:
    """What one check saw."""

    heartbeat: Heartbeat | None
    daemon_pid: int | None  # a verified, live hermes-cron daemon for this home, or None
    boot_id: str  # this machine's boot, now
    mono: float  # CLOCK_MONOTONIC
    boot: float  # CLOCK_BOOTTIME
    wall: float  # only to read the heartbeat's own fields, never to judge staleness
    foreign: ForeignHeartbeat | None = None  # what the file holds when it isn't ours


@dataclass(frozen=True)
class Verdict:
    """The watchdog's judgement of the daemon: its state, why, and the evidence."""

    state: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    slept: float = 0.0  # seconds of suspend noticed by this check


@dataclass
class Memory:
    """What the judge remembers between checks (persisted by `--once` users)."""

    key: tuple | None = None  # the heartbeat content last seen
    moved_at: float | None = None  # monotonic time it last changed
    last_mono: float | None = None
    last_boot: float | None = None
    boot_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": list(self.key) if self.key else None, "moved_at": self.moved_at,
                "last_mono": self.last_mono, "last_boot": self.last_boot, "boot_id": self.boot_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Memory:
        key = d.get("key")
        return cls(tuple(key) if key else None, d.get("moved_at"), d.get("last_mono"), d.get("last_boot"),
                   d.get("boot_id"))


class Judge:
    def __init__(self, stale_after: float | None = None, memory: Memory | None = None):
        self.stale_after = stale_after
        self.memory = memory or Memory()

    def threshold(self, hb: Heartbeat | None) -> float:
        return self.stale_after if self.stale_after is not None else stale_threshold(hb)

    def restart_grace(self, mono: float) -> None:
        """A daemon was just (re)started: give it a full threshold to show its first heartbeat."""
        self.memory.moved_at = mono
        self.memory.key = None

    def observe(self, o: Observation) -> Verdict:
        m = self.memory
        if m.boot_id != o.boot_id:  # a new boot: nothing remembered applies
            m.key = m.moved_at = m.last_mono = m.last_boot = None
            m.boot_id = o.boot_id
        slept = 0.0
        if m.last_mono is not None and m.last_boot is not None:
            slept = (o.boot - m.last_boot) - (o.mono - m.last_mono)
            if slept > SUSPEND_SLACK and m.moved_at is not None:
                m.moved_at = o.mono  # the machine slept: the grace period starts again
            else:
                slept = 0.0
        m.last_mono, m.last_boot = o.mono, o.boot
        hb = o.heartbeat
        threshold = self.threshold(hb)
        evidence: dict[str, Any] = {"daemon_pid": o.daemon_pid, "threshold_s": threshold}
        if hb is not None:
            evidence.update(heartbeat_pid=hb.pid, ticks=hb.ticks, heartbeat_boot_id=hb.boot_id,
                            last_ok_tick=hb.last_ok_tick, failures=hb.consecutive_failures)
        if o.daemon_pid is None:
            why = "no heartbeat" if hb is None else (
                "heartbeat from an earlier boot" if hb.boot_id != o.boot_id else "no live daemon process")
            return Verdict(GONE, f"daemon not running ({why})", evidence, slept)
        ours = hb is not None and hb.pid == o.daemon_pid and hb.boot_id == o.boot_id
        key = (hb.pid, hb.ticks, hb.time) if ours and hb is not None else ("no-heartbeat", o.daemon_pid)
        if key != m.key:
            first_sight = m.key is None and m.moved_at is None
            m.key = key
            if first_sight and ours and hb is not None:
                # First look (--once with no memory): the wall-clock age of the heartbeat is
                # all there is to go on.
                m.moved_at = o.mono - max(0.0, o.wall - hb.time)
            else:
                m.moved_at = o.mono
        age = o.mono - (m.moved_at if m.moved_at is not None else o.mono)
        evidence["unmoved_s"] = round(age, 3)
        if age >= threshold:
            what = "heartbeat" if ours else "first heartbeat"
            return Verdict(STALE, f"{what} has not moved for {age:.1f} s (threshold {threshold:g} s)",
                           evidence, slept)
        if not ours and o.foreign is not None:
            by = f" (pid {o.foreign.pid})" if o.foreign.pid else ""
            evidence["foreign_age_s"] = round(max(0.0, o.wall - o.foreign.time), 1)
            return Verdict(FOREIGN, f"the heartbeat file was written by another ticker{by}, "
                           f"{evidence['foreign_age_s']:g} s ago; this daemon's is not there (yet)", evidence, slept)
        if not ours:
            return Verdict(STARTING, "daemon running, waiting for its first heartbeat", evidence, slept)
        assert hb is not None
        if hb.failing_for(threshold):
            err = hb.last_error.message if hb.last_error else "unknown error"
            return Verdict(FAILING, f"ticks failing for {threshold:g} s or more: {err}", evidence, slept)
        if hb.lock_wait is not None:
            w = hb.lock_wait
            evidence.update(lock_holder_pid=w.holder_pid, lock_holder_command=w.holder_command,
                            lock_waited_s=round(max(0.0, hb.time - w.since), 1))
            return Verdict(WAITING, f"alive; its ticks wait for the tick lock, held by pid {w.holder_pid or '?'}"
                           + (f" ({w.holder_command})" if w.holder_command else "") + "; a restart can't help",
                           evidence, slept)
        if evidence.get("failures"):
            return Verdict(HEALTHY, "heartbeat moving; the last tick failed, not yet for the threshold",
                           evidence, slept)
        return Verdict(HEALTHY, "heartbeat moving, ticks succeeding", evidence, slept)
