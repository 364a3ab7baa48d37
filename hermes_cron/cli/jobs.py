"""Job commands: add, edit, remove, pause, resume, list, show, next, export."""
# The store, engine and schedule code are imported inside the commands on purpose: every
# command's start imports this module, and `status` must start fast.

from __future__ import annotations

import json
import os
import time
from typing import Any

import click

from hermes_cron.cli.common import _ctx, _emit_json, _home_option, cli, complete_job_names, complete_zones
from hermes_cron.cli.options import _common_fields, _edit_options, _job_options, _parse_env, _zone_prefix
from hermes_cron.cli.render import clip, next_text, size_text
from hermes_cron.contract.cli_types import Count
from hermes_cron.errors import InvalidInput


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("name")
@_job_options
@click.argument("command", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the job and its next fire times as JSON.")
@_home_option
def add(name: str, command: tuple[str, ...], as_json: bool, **opts: Any) -> None:
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
    _done("added", job, as_json)
    _note_six_fields(job)


def _done(what: str, job, as_json: bool) -> None:  # job: logic.jobs.Job
    """Say what was saved and when it fires next: the times computed, so a misreading shows."""
    from hermes_cron.logic.reconcile import initial_next_run
    from hermes_cron.logic.schedule import upcoming
    from hermes_cron.logic.zones_lite import utc_iso

    if as_json:
        first = initial_next_run(job, time.time()) if job.enabled else None
        nexts = [first, *upcoming(job.compiled, first, 2)] if first is not None else []
        _emit_json({**job.to_dict(), "next_runs": [utc_iso(t) for t in nexts]})
        return
    click.echo(f"{what} {job.name}: {job.schedule} ({job.tz}), next run {next_text(job, time.time())}")


def _note_six_fields(job) -> None:  # job: logic.jobs.Job
    """Six fields are read seconds first; one written for croniter (seconds last) must not
    change meaning without a word."""
    from hermes_cron.logic.cronexpr import seconds_last_reading

    other = seconds_last_reading(job.schedule, job.name)
    if other is not None:
        click.echo(f"hermes-cron: note: 6 fields are read with the seconds FIRST, as in Quartz and Spring; "
                   f"if you wrote {job.schedule!r} for croniter (seconds last), the same schedule here is "
                   f"{other!r}", err=True)


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
@click.argument("name", shell_complete=complete_job_names)
@_edit_options
@click.argument("command", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the job and its next fire times as JSON.")
@_home_option
def edit(name: str, command: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Change a job: only the options given change; -- COMMAND replaces the command."""
    from hermes_cron.app.jobs import edit_job

    changes = _common_fields(opts)
    if opts.get("no_timeout"):
        changes["timeout"] = None
    if opts.get("no_cwd"):
        changes["cwd"] = None
    if opts.get("no_ping"):
        changes["ping"] = None
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
    _done("edited", job, as_json)
    if "schedule" in changes:
        _note_six_fields(job)


@cli.command()
@click.argument("name", shell_complete=complete_job_names)
@_home_option
def remove(name: str) -> None:
    """Remove a job. Its history stays; runs in flight finish and are recorded."""
    from hermes_cron.app.jobs import remove_job

    remove_job(_ctx().home, name)
    click.echo(f"removed {name}")


@cli.command()
@click.argument("name", shell_complete=complete_job_names)
@_home_option
def pause(name: str) -> None:
    """Pause a job: it stays defined but doesn't run."""
    from hermes_cron.app.jobs import set_enabled

    set_enabled(_ctx().home, name, False)
    click.echo(f"paused {name}")


@cli.command()
@click.argument("name", shell_complete=complete_job_names)
@_home_option
def resume(name: str) -> None:
    """Resume a paused job from its next slot (paused time is not caught up)."""
    from hermes_cron.app.jobs import set_enabled

    job = set_enabled(_ctx().home, name, True)
    click.echo(f"resumed {name}, next run {next_text(job, time.time())}")


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option
def list_(as_json: bool) -> None:
    """List the jobs with their next run and last status."""
    from hermes_cron.store.jobstore import Invalid
    from hermes_cron.app.jobs import job_views
    from hermes_cron.logic.zones import format_instant, load_zone

    warnings: list[str] = []
    views = job_views(_ctx().home, warnings=warnings)
    for warning in warnings:
        click.echo(f"hermes-cron: {warning}", err=True)
    if as_json:
        _emit_json([v.to_dict() for v in views])
        return
    if not views:
        click.echo("no jobs (add one with: hermes-cron add NAME --schedule EXPR -- COMMAND)")
        return
    # The schedule column is as wide as the longest schedule (within reason): a schedule cut short
    # says the wrong thing.
    width = min(max([15] + [len(v.job.schedule) for v in views if not isinstance(v, Invalid)]), 60)
    nw = min(max([16] + [len(v.name if isinstance(v, Invalid) else v.job.name) for v in views]), 40)
    click.echo(f"{'NAME':<{nw}} {'SCHEDULE':<{width}} {'NEXT RUN':<25} {'LAST':<11} STATE")
    for v in views:
        if isinstance(v, Invalid):
            click.echo(f"{clip(v.name, nw):<{nw}} {'?':<{width}} {'-':<25} {'-':<11} INVALID: {v.reason}")
            continue
        nxt = format_instant(v.next_run, load_zone(v.job.tz)) if v.next_run else "-"
        state = f"running:{v.running}" if v.running else v.state_text
        if v.job.hermes is not None:
            state += f" (Hermes job {v.job.hermes['name']!r})"
        click.echo(f"{clip(v.job.name, nw):<{nw}} {clip(v.job.schedule, width):<{width}} {nxt:<25} "
                   f"{clip(str(v.last_status or '-'), 11):<11} {state}".rstrip())
    if any(not isinstance(v, Invalid) and v.ticked_by_hermes for v in views):
        click.echo("hermes-ticker: the Hermes agent's own ticker fires these jobs; to have hermes-cron fire "
                   "them: hermes-cron hermes enable")


@cli.command()
@click.argument("name", shell_complete=complete_job_names)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option
def show(name: str, as_json: bool) -> None:
    """Show one job in full."""
    from hermes_cron.logic.durations import format_duration
    from hermes_cron.logic.schedule import upcoming
    from hermes_cron.app.jobs import job_views
    from hermes_cron.logic.zones import format_instant, load_zone

    from hermes_cron.app.hermes_view import resolve

    view = job_views(_ctx().home, [resolve(_ctx().home, name)])[0]
    if as_json:
        _emit_json(view.to_dict())
        return
    if not hasattr(view, "job"):  # an invalid entry of hermes-cron-jobs.json
        click.echo(f"{'name:':<15}{view.name}\n{'state:':<15}INVALID: {view.reason}\n"
                   f"{'entry:':<15}{json.dumps(view.entry, ensure_ascii=False)[:2000]}\n"
                   f"{'to do:':<15}fix it in hermes-cron-jobs.json by hand, or: hermes-cron remove {view.name}")
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
        ("jitter", format_duration(job.jitter) if job.jitter else "none"),
        ("cwd", job.cwd or "$HOME"),
        ("env", " ".join(f"{k}={v}" for k, v in job.env) or "-"),
        ("output cap", size_text(job.output_cap)),
        ("keep runs", str(job.keep_runs)),
    ]
    if job.hermes is not None:
        rows[1] = ("command", f"Hermes's own run of its job {job.hermes['id']} ({job.hermes['name']}): "
                   "its fire_due steps in Hermes's Python")
        rows = [(k, "Hermes's own environment" if k == "env" else v) for k, v in rows]
        rows.append(("fired by", "Hermes's own ticker (hand it over: hermes-cron hermes enable)"
                     if view.ticked_by_hermes else "hermes-cron (the hand-over is active)"))
    for key, value in rows:
        click.echo(f"{key + ':':<15}{value}")


def _job_named(word: str):  # -> logic.jobs.Job | None
    """The job a one-word `next` argument names (a schedule is never one word but a macro)."""
    if " " in word.strip() or word.startswith("@"):
        return None
    from hermes_cron.app.hermes_view import listing, resolve
    from hermes_cron.logic.hermes import is_hermes_name
    from hermes_cron.store import definitions

    home = _ctx().home
    name = resolve(home, word)
    if is_hermes_name(name):
        hj = listing(home)[1].jobs.get(name)
        return hj.job if hj is not None else None
    return definitions.load(home).jobs.get(name)


@cli.command(name="next")
@click.argument("expr")
@click.option("--tz", metavar="ZONE", shell_complete=complete_zones, help="IANA time zone (default: this machine's).")
@click.option("--count", "-n", default=5, show_default=True, type=Count(1, 1000))
@click.option("--from", "start", metavar="TIME", help="Start from this ISO time instead of now.")
@click.option("--name", "hash_key", default="", metavar="JOB", help="Job name that spreads H fields.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option  # accepted like every command's, though `next` reads nothing from the home
def next_(expr: str, tz: str | None, count: int, start: str | None, hash_key: str, as_json: bool) -> None:
    """Preview the next fire times of a schedule (or of the job EXPR names), with their UTC offsets."""
    import time

    from hermes_cron.logic.schedule import RebootSchedule, check_fires, parse_at, parse_schedule, upcoming
    from hermes_cron.logic.zones import format_instant, load_zone, local_zone_name
    from hermes_cron.logic.zones_lite import utc_iso

    job = _job_named(expr)
    if job is not None:  # a job's name (ours, or a Hermes job's): its own schedule, zone and anchor
        expr, tz = job.schedule, tz or job.tz
    prefixed = _zone_prefix({"schedule": expr, "tz": tz})  # CRON_TZ=ZONE EXPR, as for add
    expr, tz = prefixed.get("schedule", expr), prefixed.get("tz", tz)
    tz = tz or local_zone_name()
    zone = load_zone(tz)
    t0 = parse_at(start, zone, "--from") if start else time.time()
    sched = job.compiled if job is not None and tz == job.tz else parse_schedule(
        expr, tz, hash_key=job.name if job is not None else hash_key,
        anchor=job.anchor if job is not None and job.anchor else float(int(t0)))
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
