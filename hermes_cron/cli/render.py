"""Text for the terminal, built from data: pure functions that return strings, with no output
of their own (the commands echo what these return)."""

from __future__ import annotations

TYPE_CHECKING = False  # (see hermes_cron/__init__.py)
if TYPE_CHECKING:
    from typing import Any

from hermes_cron.logic.durations import format_duration


def next_text(job, now: float) -> str:
    """When a job runs next, in its zone."""
    # schedule code is loaded here, not at the top: `status` uses this module and starts fast
    from hermes_cron.logic.reconcile import initial_next_run
    from hermes_cron.logic.schedule import RebootSchedule
    from hermes_cron.logic.zones import format_instant, load_zone

    if not job.enabled:
        return "none (paused)"
    if isinstance(job.compiled, RebootSchedule):
        return "at the next boot"
    nxt = initial_next_run(job, now)
    return format_instant(nxt, load_zone(job.tz)) if nxt is not None else "none"


def output_tail(output: bytes, lines: int = 10, width: int = 200) -> list[str]:
    """The last lines of a run's output, each cut to `width` characters, for a terminal."""
    text = output[-8192:].decode(errors="replace").replace("\r", "")
    return [clip(line, width) for line in text.rstrip("\n").split("\n")[-lines:]] if text.strip() else []


def size_text(size: int) -> str:
    """A byte count as it would be typed: 1M, 512K, or the bytes when they don't divide."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit} ({size} bytes)"
    return f"{size} bytes"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_duration(round(seconds)) if seconds >= 1 else f"{seconds:.1f}s"


def run_status(run) -> str:
    """A run's outcome (or state) with its exit code or signal, as history and trigger show it."""
    text = str(run.outcome or run.state)
    if run.exit_code is not None and run.outcome != "succeeded":
        text += f" (exit {run.exit_code})"
    if run.signal:
        text += f" (signal {run.signal})"
    if run.outcome == "missed" and run.missed_count:
        text += f" x{run.missed_count}"
    return text


def status_lines(r: dict[str, Any], code: int, now: float) -> list[str]:
    """`status` as text, from status_report()'s report and exit code."""
    verdict = {0: "running", 1: "dead (pidfile left behind)", 3: "not running", 150: "running but UNHEALTHY"}[code]
    lines = [("hermes-cron", f"{verdict}" + (f", pid {r['pid']}, up {age(r['uptime_s'])}" if r["running"] else "")),
             ("home", r["home"]), ("version", r["version"])]
    if r["stale_pidfile"]:
        lines.append(("pidfile", f"stale: {r['stale_pidfile']}"))
    if r["running"] and r.get("unhealthy_reason"):
        lines.append(("unhealthy", r["unhealthy_reason"]))
    foreign = r.get("heartbeat_foreign")
    if foreign:
        lines.append(("heartbeat", "written by another ticker" + (f" (pid {foreign['pid']})" if foreign["pid"] else "")
                      + f", {age(foreign['age_s'])} ago"))
    if r["running"]:
        if r.get("lock_wait"):
            w = r["lock_wait"]
            lines.append(("tick lock", f"waiting {age(w['waited_s'])} for pid {w['holder_pid'] or '?'}"
                          + (f" ({w['holder_command']})" if w["holder_command"] else "")))
        if r["heartbeat_age_s"] is not None:
            stale = " STALE" if r["heartbeat_stale"] else ""
            lines.append(("heartbeat", f"{age(r['heartbeat_age_s'])} ago (stale after "
                                       f"{age(r['heartbeat_stale_after_s'])}){stale}, {r['ticks']} ticks"))
        elif not foreign:
            lines.append(("heartbeat", "none yet"))
        last_ok = r["last_ok_tick"]
        lines.append(("last good tick", f"{iso_text(last_ok)} ({age(r['last_ok_age_s'])} ago)" if last_ok else "never"))
    if r["last_error"]:
        e = r["last_error"]
        lines.append(("last error", f"{iso_text(e.get('time'))} {e.get('kind')}: {e.get('message')}"))
    if r["store_error"]:
        lines.append(("store", f"UNREADABLE: {r['store_error']}"))
    j = r["jobs"]
    lines.append(("jobs", f"{j.get('enabled', 0)} enabled, {j.get('paused', 0)} paused, "
                          f"{j.get('completed', 0)} completed"
                  + (f", {j['invalid']} INVALID" if j.get("invalid") else "")))
    for i, bad in enumerate(r.get("invalid_jobs") or []):
        lines.append(("invalid" if i == 0 else "", f"{bad['job']}: {bad['reason']}"))
    lines.append(("running", ", ".join(f"{x['job']} (run {x['run_id']}, {age(x['age_s'])})" for x in r["in_flight"])
                  or "none"))
    for i, n in enumerate(r["next"]):
        lines.append(("next" if i == 0 else "", f"{iso_text(n['at'])}  {n['job']}"))
    lines += _hermes_status(r.get("hermes"), r["running"])
    for i, f in enumerate(r["recent_failures"]):
        what = f["status"] + (f" (exit {f['exit_code']})" if f["exit_code"] is not None else "") + \
            (f" (signal {f['signal']})" if f["signal"] else "")
        lines.append(("failures" if i == 0 else "", f"{iso_text(f['ended'])}  {f['job']} run {f['run_id']}: {what}"))
    return [f"{key + (':' if key else ''):<16}{value}" for key, value in lines]


def _hermes_status(h: dict[str, Any] | None, running: bool) -> list[tuple[str, str]]:
    if not h or not h.get("present"):
        return []
    ho = h["handover"]
    if ho["active"]:
        out = [("hermes", f"hand-over active: hermes-cron fires Hermes's {h['jobs_ticked_by_us']} job(s)")]
    else:
        out = [("hermes", f"{h['jobs_ticked_by_hermes']} Hermes job(s) fired by Hermes's own ticker: {ho['reason']}")]
    if ho["active"] and not running:
        out.append(("", "hermes-cron is not running: nothing fires Hermes's jobs until it starts"))
    if h.get("error"):
        out.append(("", f"Hermes's jobs file can't be read (the last good reading stays in force): {h['error']}"))
    if not ho["plugin_current"]:
        out.append(("", f"the provider plugin is version {ho['plugin_version']}, this hermes-cron ships another: "
                        "refresh it with: hermes-cron hermes enable"))
    return out


def cluster_lines(c: dict[str, Any]) -> list[str]:
    """`status --cluster` as text."""
    out = [f"{'store:':<16}{c['store']}", "nodes:"]
    for n in c["nodes"]:
        state = "FENCED" if n["fenced"] else ("healthy" if n["healthy"] else "STALE")
        beat = f"{age(n['heartbeat_age_s'])} ago" if n["heartbeat_age_s"] is not None else "never"
        offset = f", clock {n['clock_offset_s']:+.3f} s" if n["clock_offset_s"] is not None else ""
        out.append(f"  {n['node']}  {state}, epoch {n['epoch']}, pid {n['pid']}, heartbeat {beat}, lease "
                   f"{n['lease_s']:g} s, {n['leases_held']} lease(s) held{offset}, version {n['version']}")
    out.append("recent runs:")
    for r in c["recent_runs"]:
        out.append(f"  {r['run_id']:>6}  {r['job']:<20} {r['status']:<12} {r['node'] or '-'}")
    return out


def hermes_lines(h: dict[str, Any]) -> list[str]:
    """`hermes status` as text."""
    if not h.get("present"):
        return [f"no Hermes agent jobs here ({h['jobs_file']} does not exist)"]
    ho = h["handover"]
    lines = [("hand-over", ("ACTIVE: " if ho["active"] else "inactive: ") + ho["reason"]),
             ("jobs file", f"{h['jobs_file']}: {h['jobs_read']} job(s) read"
              + (f"; ERROR: {h['error']}" if h.get("error") else "")),
             ("provider", f"cron.provider in Hermes's config: {ho['provider'] or 'unset'}"),
             ("plugin", f"version {ho['plugin_version']}" + ("" if ho["plugin_current"] else " (outdated: run "
                                                            "hermes-cron hermes enable)") if ho["plugin_version"]
              else "not installed"),
             ("hermes ticker", f"last beat {age(ho['hermes_ticker_age'])} ago" if ho["hermes_ticker_age"] is not None
              else "no heartbeat here")]
    if ho.get("python"):
        lines.append(("hermes python", ho["python"]))
    out = [f"{key + ':':<16}{value}" for key, value in lines]
    for j in h["jobs"]:
        what = j["schedule"] or "-"
        state = j["state"] if j["enabled"] else "paused"
        extra = f"; {j['problem']}" if j["problem"] else f"; fired by {j['ticked_by']}"
        out.append(f"  {j['name']:<24} {j['hermes_name'][:24]!r:<26} {what:<20} {state}{extra}")
    return out


def local_text(ts: float | None, zone: Any = None) -> str:
    """An instant for people: the wall time in `zone` (default: this machine's) with its UTC
    offset, `2026-11-28 23:17:03+01:00`; JSON gives ISO 8601 UTC instead."""
    from datetime import datetime

    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(ts, zone) if zone is not None else datetime.fromtimestamp(ts).astimezone()
    return moment.isoformat(sep=" ", timespec="seconds")


def iso_text(iso: str | None) -> str:
    """An ISO 8601 UTC instant from a report (`...Z`), shown in this machine's zone."""
    from datetime import datetime

    if not iso:
        return "-"
    return local_text(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def run_zone(r) -> Any:
    """The zone a run's times are shown in: its job's (as claimed), else this machine's."""
    spec = getattr(r, "job_spec", None)
    if spec is None:
        return None
    try:
        from hermes_cron.logic.zones import load_zone

        return load_zone(spec.tz)
    except Exception:  # noqa: BLE001 - a zone that no longer loads: the machine's
        return None


def history_row(r, with_job: bool = False) -> str:
    """One run as a line of `history`: its job (across jobs), scheduled time and start (in the
    job's zone, with the offset), duration, outcome with exit code or signal, and why it ended
    so, if anything says."""
    duration = "-" if r.duration is None else f"{r.duration:.2f}s" if r.duration < 60 else age(r.duration)
    zone = run_zone(r)
    started, scheduled = local_text(r.started_at, zone), local_text(r.scheduled, zone)
    job = f"{clip(r.job, 16):<16} " if with_job else ""
    line = f"{r.id:>6}  {job}{scheduled:<25} {started:<25} {duration:>9}  {run_status(r):<22}"
    reason = " ".join((r.reason or "").split())
    if getattr(r, "attempt", 1) > 1 and "attempt" not in reason:  # (a record from before attempts: 1)
        reason = f"attempt {r.attempt}" + (f": {reason}" if reason else "")
    return (line + "  " + clip(reason, 90)).rstrip() if reason else line.rstrip()


def history_header(with_job: bool = False) -> str:
    job = f"{'JOB':<16} " if with_job else ""
    return f"{'RUN':>6}  {job}{'SCHEDULED':<25} {'STARTED':<25} {'DURATION':>9}  {'STATUS':<22}  REASON"
