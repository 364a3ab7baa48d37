"""Prometheus metrics (`hermes-cron metrics`, and `/metrics` of `hermes-cron serve`), read from
the store and the daemon's heartbeat on each scrape, in the exposition format of the Prometheus
client library. Nothing here runs in the daemon: serving adds no wake-up and no memory to it.

Per job: runs by outcome (counted for ever: history is pruned, counters are not), missed slots,
the last success, the last run's duration, the next fire time, runs going on. For the daemon:
up, healthy, heartbeat age, ticks, tick failures, claims, and the tick lock's hold time and the
fire latency as histograms (kept by the daemon since it started, written with its heartbeat).
"""

from __future__ import annotations

import time
from typing import Iterator

from hermes_cron.contract.paths import Home


class Collector:
    """A prometheus_client collector: fresh facts at every collect()."""

    def __init__(self, home: Home):
        self.home = home

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from hermes_cron.app.control import status_report
        from hermes_cron.contract.heartbeat import read_heartbeat
        from hermes_cron.logic.histogram import Histogram

        now = time.time()
        report, _ = status_report(self.home, now)
        up = GaugeMetricFamily("hermes_cron_up", "1 if the daemon runs (pid, start time and command line verified)")
        up.add_metric([], 1.0 if report["running"] else 0.0)
        yield up
        healthy = GaugeMetricFamily("hermes_cron_healthy", "1 if the daemon runs, its heartbeat is fresh and its "
                                    "last tick succeeded")
        healthy.add_metric([], 1.0 if report["healthy"] else 0.0)
        yield healthy
        hb = read_heartbeat(self.home.heartbeat)
        if hb is not None and report["running"]:
            age = GaugeMetricFamily("hermes_cron_heartbeat_age_seconds", "Seconds since the daemon's last heartbeat")
            age.add_metric([], max(0.0, now - hb.time))
            yield age
            for name, value, text in (("ticks", hb.ticks, "Scheduled ticks since the daemon started"),
                                      ("tick_failures", hb.tick_failures, "Ticks that failed since the daemon started"),
                                      ("claims", hb.claims, "Runs claimed since the daemon started")):
                c = CounterMetricFamily(f"hermes_cron_{name}", text)
                c.add_metric([], float(value))
                yield c
            for name, text in (("lock_hold_seconds", "How long each tick held the tick lock"),
                               ("fire_latency_seconds", "From a run's slot to its start")):
                h = Histogram.from_dict((hb.histograms or {}).get(name))
                if h is not None:
                    fam = HistogramMetricFamily(f"hermes_cron_{name}", text)
                    fam.add_metric([], [(_bound(b), float(c)) for b, c in h.cumulative()], h.total)
                    yield fam
        yield from self._jobs(now)

    def _jobs(self, now: float) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from hermes_cron.store.opening import has_state, open_store

        if not has_state(self.home):
            return
        store = open_store(self.home)
        try:
            counts = store.counts()
            rows = store.sched_rows()
            history = store.history(None, 0)
            running = {}
            for run in store.open_runs():
                running[run.job] = running.get(run.job, 0) + 1
        finally:
            store.close()
        runs = CounterMetricFamily("hermes_cron_job_runs", "Runs ended, by job and outcome", labels=["job", "outcome"])
        missed = CounterMetricFamily("hermes_cron_job_missed_slots", "Slots that passed unrun", labels=["job"])
        for (job, outcome), n in sorted(counts.items()):
            if outcome == "missed":
                missed.add_metric([job], float(n))
            else:
                runs.add_metric([job, outcome], float(n))
        yield runs
        yield missed
        success = GaugeMetricFamily("hermes_cron_job_last_success_timestamp_seconds",
                                    "When the job's last successful run ended", labels=["job"])
        duration = GaugeMetricFamily("hermes_cron_job_last_duration_seconds", "How long the job's last run lasted",
                                     labels=["job"])
        seen_ok, seen_run = set(), set()
        for run in history:  # newest first
            if run.job not in seen_ok and str(run.outcome) == "succeeded" and run.ended_at:
                seen_ok.add(run.job)
                success.add_metric([run.job], run.ended_at)
            if run.job not in seen_run and run.duration is not None:
                seen_run.add(run.job)
                duration.add_metric([run.job], run.duration)
        yield success
        yield duration
        nxt = GaugeMetricFamily("hermes_cron_job_next_run_timestamp_seconds", "The job's next fire time",
                                labels=["job"])
        going = GaugeMetricFamily("hermes_cron_job_running", "The job's runs going on now", labels=["job"])
        for job, row in sorted(rows.items()):
            if row.enabled and row.next_run is not None:
                nxt.add_metric([job], row.next_run)
            going.add_metric([job], float(running.get(job, 0)))
        yield nxt
        yield going


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


def exposition(home: Home) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(home))
    return generate_latest(registry)
