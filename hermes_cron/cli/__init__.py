"""The `hermes-cron` command: a thin click layer over the library.

Modules are imported inside the commands, so each command loads only what it uses
(`status` must start fast; see scripts/bench.py).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from hermes_cron import __version__
from hermes_cron.errors import HermesCronError, InvalidInput
from hermes_cron.contract.cli_types import Count, Seconds


class Context:
    def __init__(self, home: str | None, store: dict):
        self._home_opt = home
        self._store = store

    @property
    def home(self):  # -> paths.Home
        """The home, once this process has settled who it acts as on it (see access.py): root on
        another user's home becomes that user here, before any file in it is read."""
        from hermes_cron.contract.paths import Home, resolve_home

        root = resolve_home(self._home_opt)
        if "acting" not in self._store:
            from hermes_cron.contract.access import settle

            self._store["acting"] = settle(root, preload=_preload)
        return Home(root)

    @property
    def became_user(self) -> bool:
        """Whether root became the home's owner to act on it (settled by `home`)."""
        return bool(self._store.get("acting"))


def _home_option(f):
    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            ctx.ensure_object(dict)["home"] = value
        return value

    return click.option("--home", metavar="PATH", expose_value=False, callback=remember, is_eager=True,
                        help="HERMES_HOME to use (default: $HERMES_HOME, else ~/.hermes).")(f)


def _ctx() -> Context:
    ctx = click.get_current_context()
    root = ctx.find_root()
    home = (ctx.obj or {}).get("home") or (root.obj or {}).get("home")
    return Context(home, root.ensure_object(dict))


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_home_option
@click.version_option(__version__, prog_name="hermes-cron")
def cli() -> None:
    """hermes-cron: a cron daemon that fires on time and never loses a run."""


def _preload() -> None:
    """Import every module a command may need, while we are still root: the user we become may
    not be allowed to read this installation (a Python under /root, say)."""
    import importlib
    import pkgutil

    import hermes_cron

    for module in pkgutil.walk_packages(hermes_cron.__path__, "hermes_cron."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for name in ("json", "pwd", "re", "shlex", "selectors", "shutil", "socket", "sqlite3",
                 "subprocess", "zoneinfo", "resource", "select", "signal", "errno", "fcntl"):
        importlib.import_module(name)


# ---------------------------------------------------------------------------------------
# job definitions


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--env {pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def _parse_size(text: str) -> int:
    """A size as people type it (1048576, 512K, 1M), within the output cap's range."""
    import re

    from hermes_cron.logic.jobs import OUTPUT_CAP

    m = re.fullmatch(r"\s*([0-9]{1,30})\s*([kmg]i?b?|b)?\s*", text.lower())
    if not m:
        raise InvalidInput(f"output cap {text!r} is not a size (e.g. 1048576, 512K, 1M)")
    scale = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[(m.group(2) or "")[:1]]
    size = int(m.group(1)) * scale
    if not OUTPUT_CAP[0] <= size <= OUTPUT_CAP[1]:
        raise InvalidInput(f"output cap {text!r} is out of range: 1K to 1G")
    return size


def _job_options(f, for_edit: bool = False):
    options = [
        click.option("--schedule", "-s", metavar="EXPR", required=not for_edit,
                     help="Cron expression, @macro, 'every 5m', 'at 2026-12-01T09:00' or @reboot."),
        click.option("--tz", metavar="ZONE", help="IANA time zone (default: this machine's)."),
        click.option("--timeout", metavar="DURATION", help="Stop the run after this long (e.g. 10m)."),
        click.option("--overlap", type=click.Choice(["skip", "allow", "replace"]),
                     help="When due while still running: skip (default), allow, replace."),
        click.option("--misfire-grace", metavar="DURATION",
                     help="Run a missed slot if no older than this (default 10m)."),
        click.option("--kill-grace", metavar="DURATION", help="Between SIGTERM and SIGKILL (default 10s)."),
        click.option("--cwd", metavar="DIR", help="Working directory (default: $HOME)."),
        click.option("--env", "env", multiple=True, metavar="K=V", help="Extra environment variable."),
        click.option("--output-cap", metavar="SIZE", help="Keep at most this much output per run (default 1M)."),
        click.option("--keep-runs", type=Count(1, 1_000_000), metavar="N",
                     help="Runs kept in history, 1 to 1000000 (default 50)."),
        click.option("--shell", is_flag=True, default=None, help="COMMAND is one shell string (/bin/sh -c)."),
    ]
    if for_edit:
        options += [
            click.option("--no-timeout", is_flag=True, help="Remove the timeout."),
            click.option("--no-cwd", is_flag=True, help="Use the default working directory."),
            click.option("--unset-env", multiple=True, metavar="K", help="Remove an environment variable."),
            click.option("--no-shell", is_flag=True, help="COMMAND is an argv list."),
        ]
    else:
        options.append(click.option("--paused", is_flag=True, help="Add the job paused."))
    for option in reversed(options):
        f = option(f)
    return f


def _edit_options(f):
    return _job_options(f, for_edit=True)


def _common_fields(opts: dict[str, Any]) -> dict[str, Any]:
    from hermes_cron.logic.durations import KILL_GRACE, MISFIRE_GRACE, TIMEOUT, parse_duration

    out: dict[str, Any] = {}
    if opts.get("schedule") is not None:
        out["schedule"] = opts["schedule"]
    if opts.get("tz") is not None:
        out["tz"] = opts["tz"]
    if opts.get("timeout") is not None:
        out["timeout"] = parse_duration(opts["timeout"], "timeout", TIMEOUT)
    if opts.get("overlap") is not None:
        out["overlap"] = opts["overlap"]
    if opts.get("misfire_grace") is not None:
        out["misfire_grace"] = parse_duration(opts["misfire_grace"], "misfire grace", MISFIRE_GRACE)
    if opts.get("kill_grace") is not None:
        out["kill_grace"] = parse_duration(opts["kill_grace"], "kill grace", KILL_GRACE)
    if opts.get("cwd") is not None:
        out["cwd"] = os.path.abspath(os.path.expanduser(opts["cwd"]))
    if opts.get("output_cap") is not None:
        out["output_cap"] = _parse_size(opts["output_cap"])
    if opts.get("keep_runs") is not None:
        out["keep_runs"] = opts["keep_runs"]
    return out


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("name")
@_job_options
@click.argument("command", nargs=-1, required=True)
@_home_option
def add(name: str, command: tuple[str, ...], **opts: Any) -> None:
    """Add a job: hermes-cron add NAME --schedule EXPR [options] -- COMMAND [ARG]..."""
    from hermes_cron.logic.jobs import Job
    from hermes_cron.app.jobs import add_job
    from hermes_cron.logic.zones import local_zone_name

    fields = _common_fields(opts)
    fields.setdefault("tz", local_zone_name())
    shell = bool(opts.get("shell"))
    if shell:
        _one_shell_string(command)
    job = Job(name=name, command=tuple(command), shell=shell, enabled=not opts.get("paused"),
              env=tuple(sorted(_parse_env(opts["env"]).items())), **fields)
    job = add_job(_ctx().home, job)
    _warn_if_missing(job)
    click.echo(f"added {job.name}: {job.schedule} ({job.tz}), next run {_next_text(job)}")


def _one_shell_string(command: tuple[str, ...]) -> None:
    if len(command) != 1:
        raise InvalidInput(f"--shell takes the command as one string, not {len(command)} words: quote it, "
                           f"e.g. --shell -- {' '.join(command)!r}")


def _warn_if_missing(job) -> None:  # job: jobs.Job
    """A command that isn't there now gets a warning, not a refusal: PATH may differ at run time."""
    import shutil

    if job.shell:
        return
    program = job.command[0]
    path = dict(job.env).get("PATH", os.environ.get("PATH", ""))
    found = os.access(program, os.X_OK) and not os.path.isdir(program) if "/" in program else \
        shutil.which(program, path=path) is not None
    if not found:
        where = "does not exist or is not executable" if "/" in program else f"is not on PATH ({path})"
        click.echo(f"hermes-cron: warning: {program!r} {where}; unless it is there when the job runs, "
                   "the run will fail with exit 127 (command not found)", err=True)


@cli.command()
@click.argument("name")
@_edit_options
@click.argument("command", nargs=-1)
@_home_option
def edit(name: str, command: tuple[str, ...], **opts: Any) -> None:
    """Change a job: only the options given change; -- COMMAND replaces the command."""
    from hermes_cron.app.jobs import edit_job

    changes = _common_fields(opts)
    if opts.get("no_timeout"):
        changes["timeout"] = None
    if opts.get("no_cwd"):
        changes["cwd"] = None
    if opts["env"]:
        changes["env_set"] = _parse_env(opts["env"])
    if opts["unset_env"]:
        changes["env_unset"] = list(opts["unset_env"])
    if opts.get("shell"):
        changes["shell"] = True
    if opts.get("no_shell"):
        changes["shell"] = False
    if command:
        if changes.get("shell"):
            _one_shell_string(command)
        changes["command"] = tuple(command)
    if not changes:
        raise InvalidInput("nothing to change: give at least one option or a new command")
    if "shell" in changes and "command" not in changes:
        raise InvalidInput("--shell/--no-shell needs the command too (after --)")
    job = edit_job(_ctx().home, name, changes)
    if "command" in changes:
        _warn_if_missing(job)
    click.echo(f"edited {job.name}: {job.schedule} ({job.tz}), next run {_next_text(job)}")


@cli.command()
@click.argument("name")
@_home_option
def remove(name: str) -> None:
    """Remove a job. Its history stays; runs in flight finish and are recorded."""
    from hermes_cron.app.jobs import remove_job

    remove_job(_ctx().home, name)
    click.echo(f"removed {name}")


@cli.command()
@click.argument("name")
@_home_option
def pause(name: str) -> None:
    """Pause a job: it stays defined but doesn't run."""
    from hermes_cron.app.jobs import set_enabled

    set_enabled(_ctx().home, name, False)
    click.echo(f"paused {name}")


@cli.command()
@click.argument("name")
@_home_option
def resume(name: str) -> None:
    """Resume a paused job from its next slot (paused time is not caught up)."""
    from hermes_cron.app.jobs import set_enabled

    job = set_enabled(_ctx().home, name, True)
    click.echo(f"resumed {name}, next run {_next_text(job)}")


def _next_text(job) -> str:
    import time

    from hermes_cron.logic.schedule import RebootSchedule
    from hermes_cron.logic.reconcile import initial_next_run
    from hermes_cron.logic.zones import format_instant, load_zone

    if not job.enabled:
        return "none (paused)"
    if isinstance(job.compiled, RebootSchedule):
        return "at the next boot"
    nxt = initial_next_run(job, time.time())
    return format_instant(nxt, load_zone(job.tz)) if nxt is not None else "none"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option
def list_(as_json: bool) -> None:
    """List the jobs with their next run and last status."""
    from hermes_cron.store.jobstore import Invalid
    from hermes_cron.app.jobs import job_views
    from hermes_cron.logic.zones import format_instant, load_zone

    views = job_views(_ctx().home)
    if as_json:
        _emit_json([v.to_dict() for v in views])
        return
    if not views:
        click.echo("no jobs (add one with: hermes-cron add NAME --schedule EXPR -- COMMAND)")
        return
    click.echo(f"{'NAME':<16} {'SCHEDULE':<15} {'NEXT RUN':<25} {'LAST':<10} STATE")
    for v in views:
        if isinstance(v, Invalid):
            click.echo(f"{_clip(v.name, 16):<16} {'?':<15} {'-':<25} {'-':<10} INVALID: {v.reason}")
            continue
        nxt = format_instant(v.next_run, load_zone(v.job.tz)) if v.next_run else "-"
        state = f"running:{v.running}" if v.running else v.state_text
        click.echo(f"{_clip(v.job.name, 16):<16} {_clip(v.job.schedule, 15):<15} {nxt:<25} "
                   f"{_clip(str(v.last_status or '-'), 10):<10} {state}".rstrip())


@cli.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option
def show(name: str, as_json: bool) -> None:
    """Show one job in full."""
    from hermes_cron.logic.durations import format_duration
    from hermes_cron.logic.schedule import upcoming
    from hermes_cron.app.jobs import job_views
    from hermes_cron.logic.zones import format_instant, load_zone

    view = job_views(_ctx().home, [name])[0]
    if as_json:
        _emit_json(view.to_dict())
        return
    if not hasattr(view, "job"):  # an invalid entry of jobs.json
        click.echo(f"{'name:':<15}{view.name}\n{'state:':<15}INVALID: {view.reason}\n"
                   f"{'entry:':<15}{json.dumps(view.entry, ensure_ascii=False)[:2000]}\n"
                   f"{'to do:':<15}fix it in jobs.json by hand, or: hermes-cron remove {view.name}")
        return
    job = view.job
    zone = load_zone(job.tz)
    nexts = [view.next_run] + upcoming(job.compiled, view.next_run, 2) if view.next_run else []
    rows = [
        ("name", job.name),
        ("command", job.command_text() + ("   (shell)" if job.shell else "")),
        ("schedule", f"{job.schedule}   ({job.tz})"),
        ("state", view.state_text + (f", {view.running} running" if view.running else "")),
        ("next runs", ", ".join(format_instant(t, zone) for t in nexts) or "-"),
        ("last status", str(view.last_status or "-")),
        ("timeout", format_duration(job.timeout) if job.timeout else "none"),
        ("overlap", job.overlap),
        ("misfire grace", format_duration(job.misfire_grace)),
        ("kill grace", format_duration(job.kill_grace)),
        ("cwd", job.cwd or "$HOME"),
        ("env", " ".join(f"{k}={v}" for k, v in job.env) or "-"),
        ("output cap", f"{job.output_cap} bytes"),
        ("keep runs", str(job.keep_runs)),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':<15}{value}")


@cli.command(name="next")
@click.argument("expr")
@click.option("--tz", metavar="ZONE", help="IANA time zone (default: this machine's).")
@click.option("--count", "-n", default=5, show_default=True, type=Count(1, 1000))
@click.option("--from", "start", metavar="TIME", help="Start from this ISO time instead of now.")
@click.option("--name", "hash_key", default="", metavar="JOB", help="Job name that spreads H fields.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def next_(expr: str, tz: str | None, count: int, start: str | None, hash_key: str, as_json: bool) -> None:
    """Preview the next fire times of a schedule, with their UTC offsets."""
    import time

    from hermes_cron.logic.schedule import RebootSchedule, check_fires, parse_at, parse_schedule, upcoming
    from hermes_cron.logic.zones import format_instant, load_zone, local_zone_name
    from hermes_cron.logic.zones_lite import utc_iso

    tz = tz or local_zone_name()
    zone = load_zone(tz)
    t0 = parse_at(start, zone, "--from") if start else time.time()
    sched = parse_schedule(expr, tz, hash_key=hash_key, anchor=float(int(t0)))
    if isinstance(sched, RebootSchedule):
        raise InvalidInput("@reboot runs once per boot; it has no fire times to preview")
    check_fires(sched, t0)
    times = upcoming(sched, t0, count)
    if as_json:
        _emit_json({"expression": expr, "tz": tz, "times": [
            {"local": format_instant(t, zone), "utc": utc_iso(t)} for t in times]})
        return
    for t in times:
        click.echo(f"{format_instant(t, zone)}   ({utc_iso(t)})")


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@_home_option
def export(output: str | None) -> None:
    """Print the jobs and where each stands, as JSON (a readable copy of the stores)."""
    from hermes_cron import __version__
    from hermes_cron.app.jobs import job_views

    doc = {"hermes_cron": __version__, "home": _ctx().home.root,
           "jobs": [v.to_dict() for v in job_views(_ctx().home)]}
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if output:
        from hermes_cron.contract.files import atomic_write

        atomic_write(os.path.abspath(output), text.encode(), ours=0)
    else:
        click.echo(text, nl=False)


# ---------------------------------------------------------------------------------------
# the daemon


@cli.command()
@click.option("--tick-interval", default=60.0, show_default=True, type=Seconds(0.1, 3600),
              help="Seconds between ticks; ticks fall on multiples of it.")
@click.option("--heartbeat-every", default=5, show_default=True, type=Count(1, 10_000),
              help="Write the heartbeat every N ticks.")
@click.option("--max-concurrent", type=Count(1, 100_000), help="Most runs at once (default: no limit).")
@click.option("--log-format", type=click.Choice(["auto", "console", "json", "keyvalue"]), default="auto",
              show_default=True)
@click.option("--log-file", type=click.Path(dir_okay=False), help="Append logs here (SIGHUP reopens it).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@_home_option
def run(tick_interval: float, heartbeat_every: int, max_concurrent: int | None, log_format: str,
        log_file: str | None, log_level: str) -> None:
    """Run the daemon in the foreground."""
    # The daemon never speaks TLS, but asyncio (which structlog imports) loads ssl if it can,
    # and with it OpenSSL: 4 MB of resident memory for nothing. A None entry makes that
    # optional import fail quietly. Jobs are separate processes and are not affected.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from hermes_cron.engine.daemon import Daemon, Settings
    from hermes_cron.contract.logs import configure, get_logger

    from hermes_cron.contract.procinfo import cmdline

    home = _ctx().home  # settles who we act as before the log file is opened
    sink = configure(log_format, log_file, log_level)
    # The pidfile records our command line exactly as the kernel shows it: stop and the
    # watchdog signal a process only if its /proc cmdline is this, whole.
    settings = Settings(tick_interval=tick_interval, heartbeat_every=heartbeat_every,
                        max_concurrent=max_concurrent, argv=tuple(cmdline(os.getpid())))
    code = Daemon(home, settings, get_logger(), reopen_logs=sink.reopen).run()
    sys.exit(code)


# ---------------------------------------------------------------------------------------
# operating the daemon

def _daemon_options(f):
    for option in reversed([
        click.option("--tick-interval", type=Seconds(0.1, 3600), help="As for run."),
        click.option("--heartbeat-every", type=Count(1, 10_000), help="As for run."),
        click.option("--max-concurrent", type=Count(1, 100_000), help="As for run."),
        click.option("--log-format", type=click.Choice(["auto", "console", "json", "keyvalue"]), help="As for run."),
        click.option("--log-file", type=click.Path(dir_okay=False), help="As for run (default: cron/daemon.log)."),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="As for run."),
    ]):
        f = option(f)
    return f


def _run_args(opts: dict[str, Any]) -> list[str]:
    from hermes_cron.contract.command import run_args

    return run_args(opts)


def _start(run_args: list[str]) -> None:
    from hermes_cron.app.control import start as start_daemon

    ctx = _ctx()
    home = ctx.home
    proc, already = start_daemon(home, run_args, as_user=ctx.became_user)
    if already:
        click.echo(f"hermes-cron is already running (pid {proc.pid})")
    else:
        click.echo(f"hermes-cron started (pid {proc.pid})")


@cli.command()
@_daemon_options
@_home_option
def start(**opts: Any) -> None:
    """Start the daemon in the background; returns once it has ticked."""
    _start(_run_args(opts))


def _stop(timeout: float, jobs: bool) -> None:
    from hermes_cron.app.control import stop as stop_daemon
    from hermes_cron.app.runs import stop_runs

    home = _ctx().home
    found, killed, warning = stop_daemon(home, timeout)
    if warning:
        click.echo(f"hermes-cron: warning: {warning}", err=True)
    if found.proc is None:
        if found.info is not None:
            click.echo(f"hermes-cron is not running (removed a stale pidfile: {found.describe_stale()})")
        else:
            click.echo("hermes-cron is not running")
    else:
        click.echo(f"hermes-cron stopped (pid {found.proc.pid}{', with SIGKILL' if killed else ''})")
    if jobs:
        n = stop_runs(home, "stopped by hermes-cron stop --jobs")
        click.echo(f"stopped {n} running job(s)" if n else "no jobs were running")


@cli.command()
@click.option("--timeout", default=10.0, show_default=True, type=Seconds(0, 3600),
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.option("--jobs", is_flag=True, help="Also stop running jobs (TERM, then KILL after their kill grace).")
@_home_option
def stop(timeout: float, jobs: bool) -> None:
    """Stop the daemon. Running jobs go on unless --jobs is given."""
    _stop(timeout, jobs)


@cli.command()
@click.option("--timeout", default=10.0, show_default=True, type=Seconds(0, 3600))
@_daemon_options
@_home_option
def restart(timeout: float, **opts: Any) -> None:
    """Stop, then start with the same options (or the ones given here)."""
    from hermes_cron.app.control import lookup

    run_args = _run_args(opts)
    found = lookup(_ctx().home)
    if not run_args and found.info is not None and found.info.argv:
        argv = found.info.argv
        run_args = argv[argv.index("run") + 1:] if "run" in argv else []
    _stop(timeout, False)
    _start(run_args)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option
def status(as_json: bool) -> None:
    """Is the daemon running and healthy? Exit 0 healthy, 1 dead with a pidfile, 3 not running,
    150 running but unhealthy."""
    from hermes_cron.app.control import status_report

    report, code = status_report(_ctx().home)
    if as_json:
        _emit_json({**report, "exit_code": code})
    else:
        _print_status(report, code)
    sys.exit(code)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    from hermes_cron.logic.durations import format_duration

    return format_duration(round(seconds)) if seconds >= 1 else f"{seconds:.1f}s"


def _print_status(r: dict[str, Any], code: int) -> None:
    import time

    from hermes_cron.logic.zones_lite import utc_iso

    verdict = {0: "running", 1: "dead (pidfile left behind)", 3: "not running", 150: "running but UNHEALTHY"}[code]
    lines = [("hermes-cron", f"{verdict}" + (f", pid {r['pid']}, up {_age(r['uptime_s'])}" if r["running"] else "")),
             ("home", r["home"]), ("version", r["version"])]
    if r["stale_pidfile"]:
        lines.append(("pidfile", f"stale: {r['stale_pidfile']}"))
    if r["running"]:
        if r["heartbeat_age_s"] is None:
            lines.append(("heartbeat", "none yet"))
        else:
            stale = " STALE" if r["heartbeat_stale"] else ""
            lines.append(("heartbeat", f"{_age(r['heartbeat_age_s'])} ago (stale after "
                                       f"{_age(r['heartbeat_stale_after_s'])}){stale}, {r['ticks']} ticks"))
        last_ok = r["last_ok_tick"]
        lines.append(("last good tick", f"{utc_iso(last_ok)} ({_age(time.time() - last_ok)} ago)" if last_ok else "never"))
    if r["last_error"]:
        e = r["last_error"]
        lines.append(("last error", f"{utc_iso(e.get('time'))} {e.get('kind')}: {e.get('message')}"))
    if r["store_error"]:
        lines.append(("store", f"UNREADABLE: {r['store_error']}"))
    j = r["jobs"]
    lines.append(("jobs", f"{j.get('enabled', 0)} enabled, {j.get('paused', 0)} paused, {j.get('completed', 0)} completed"
                  + (f", {j['invalid']} INVALID" if j.get("invalid") else "")))
    for i, bad in enumerate(r.get("invalid_jobs") or []):
        lines.append(("invalid" if i == 0 else "", f"{bad['job']}: {bad['reason']}"))
    lines.append(("running", ", ".join(f"{x['job']} (run {x['run_id']}, {_age(x['age_s'])})" for x in r["in_flight"])
                  or "none"))
    for i, n in enumerate(r["next"]):
        lines.append(("next" if i == 0 else "", f"{n['at']}  {n['job']}"))
    for i, f in enumerate(r["recent_failures"]):
        what = f["status"] + (f" (exit {f['exit_code']})" if f["exit_code"] is not None else "") + \
            (f" (signal {f['signal']})" if f["signal"] else "")
        lines.append(("failures" if i == 0 else "", f"{f['ended']}  {f['job']} run {f['run_id']}: {what}"))
    for key, value in lines:
        click.echo(f"{key + (':' if key else ''):<16}{value}")


# ---------------------------------------------------------------------------------------
# jobs at work


@cli.command()
@click.argument("name")
@click.option("--wait", is_flag=True, help="Follow the run to its end and exit with the job's exit status.")
@_home_option
def trigger(name: str, wait: bool) -> None:
    """Run a job now (the overlap policy holds). Asks a running daemon; without one, runs it here."""
    from hermes_cron.app.runs import trigger as trigger_job, wait_run
    from hermes_cron.logic.run import exit_status

    home = _ctx().home
    run_id, here = trigger_job(home, name)
    run = wait_run(home, run_id) if (wait or here) else None
    if run is None:
        click.echo(f"triggered {name}: run {run_id}")
        return
    click.echo(f"{name} run {run_id}: {_status_text(run)}")
    if wait:
        sys.exit(exit_status(run.outcome, run.exit_code, run.signal))


def _status_text(run) -> str:
    text = str(run.outcome or run.state)
    if run.exit_code is not None and run.outcome != "succeeded":
        text += f" (exit {run.exit_code})"
    if run.signal:
        text += f" (signal {run.signal})"
    if run.outcome == "missed" and run.missed_count:
        text += f" x{run.missed_count}"
    return text


@cli.command()
@click.argument("name")
@click.option("--limit", "-n", default=20, show_default=True, type=Count(0, 1_000_000), help="0 for all.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option
def history(name: str, limit: int, as_json: bool) -> None:
    """A job's runs, newest first: scheduled time, start, duration, status, exit code or signal."""
    from hermes_cron.app.runs import history as job_history
    from hermes_cron.logic.zones_lite import utc_iso

    found = job_history(_ctx().home, name, limit)
    if as_json:
        _emit_json([r.to_dict() for r in found])
        return
    click.echo(f"{'RUN':>6}  {'SCHEDULED':<20} {'STARTED':<20} {'DURATION':>9}  STATUS")
    for r in found:
        duration = "-" if r.duration is None else f"{r.duration:.2f}s" if r.duration < 60 else _age(r.duration)
        started = (utc_iso(r.started_at) or "-")[:19].replace("T", " ")
        scheduled = (utc_iso(r.scheduled) or "-")[:19].replace("T", " ")
        click.echo(f"{r.id:>6}  {scheduled:<20} {started:<20} {duration:>9}  {_status_text(r)}")


@cli.command()
@click.argument("name")
@click.option("--run", "run_id", type=Count(1, 2**63 - 1), help="Which run (default: the latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing while the run goes on.")
@_home_option
def logs(name: str, run_id: int | None, follow: bool) -> None:
    """Print a run's output (stdout and stderr), the latest run by default."""
    import time

    from hermes_cron.app.runs import run_output
    from hermes_cron.store.runfiles import RunFiles

    home = _ctx().home
    run = run_output(home, name, run_id)
    files = RunFiles(home.run_dir(run.job, run.id))
    out = sys.stdout.buffer
    offset = 0
    while True:
        chunk = _read_output(files, offset)
        if chunk:
            out.write(chunk)
            out.flush()
            offset += len(chunk)
        if not follow:
            return
        current = run_output(home, name, run.id)
        if not current.open:
            if not chunk:
                return
            continue
        time.sleep(0.2)


@cli.command()
@_home_option
def repair() -> None:
    """As root: give back to the home's owner the files that root left in its cron/ folder."""
    from hermes_cron.contract.access import repair as repair_home
    from hermes_cron.contract.paths import resolve_home

    changed = repair_home(resolve_home(_ctx()._home_opt))
    if not changed:
        click.echo("nothing to repair: no file of root's in the home")
        return
    click.echo(f"gave {len(changed)} file(s) and folder(s) back to the home's owner, e.g. {changed[0]}")


def _read_output(files, offset: int) -> bytes:  # files: store.runfiles.RunFiles
    """What a run's output.log holds past `offset`, read without following a symlink."""
    try:
        dfd = files.open()
    except FileNotFoundError:
        return b""
    try:
        try:
            fd = os.open("output.log", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            return b""
        try:
            chunks = []
            while chunk := os.pread(fd, 1 << 20, offset + sum(map(len, chunks))):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors and documented exit codes (see README)."""
    try:
        cli.main(args=argv, prog_name="hermes-cron", standalone_mode=False)
    except HermesCronError as e:
        click.echo(f"hermes-cron: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("hermes-cron: aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        where = f" {e.ctx.command_path.split(' ', 1)[-1]}" if e.ctx and " " in e.ctx.command_path else ""
        click.echo(f"hermes-cron{where}: {e.format_message()} (see hermes-cron{where} --help)", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"hermes-cron: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as e:  # a fault of the file system or the machine: named, never a traceback
        from hermes_cron.errors import file_system_error

        where = e.filename if e.filename else "a file"
        error = file_system_error(e, f"can't use {where}")
        click.echo(f"hermes-cron: {error}", err=True)
        sys.exit(error.exit_code)
    sys.exit(0)
