"""Option sets written once: a job's fields (add, edit) and the daemon's `run` options, which
`run` declares with their defaults and `start` and `restart` pass on."""

from __future__ import annotations

import os
from typing import Any

import click

from hermes_cron.cli.common import complete_zones
from hermes_cron.contract.cli_types import Count, Seconds
from hermes_cron.contract.command import RUN_SPEC
from hermes_cron.errors import InvalidInput



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


ALERT_OPTIONS = [
    click.option("--on-failure", metavar="CMD", help="Shell command told of each failure (failed, timed out, "
                 "interrupted, lost, missed): the run's facts as JSON on stdin and HERMES_CRON_* variables."),
    click.option("--on-success", metavar="CMD", help="Shell command told of each success (and 'recovered')."),
    click.option("--notify", "notify", multiple=True, metavar="URL", help="Webhook told of every event (a JSON "
                 "POST); repeat for more."),
    click.option("--notify-on", type=click.Choice(["always", "change"]),
                 help="always (default): every event; change: only when the job goes from ok to failing or back."),
    click.option("--hook-timeout", metavar="DURATION", help="Kill a hook (or give up a webhook) after this long "
                 "(default 30s, 1s to 1h)."),
]
NO_ALERT_OPTIONS = [
    click.option("--no-on-failure", is_flag=True, help="Remove the failure hook."),
    click.option("--no-on-success", is_flag=True, help="Remove the success hook."),
    click.option("--no-notify", is_flag=True, help="Remove the webhooks."),
]


def alert_fields(opts: dict[str, Any]) -> dict[str, Any]:
    """The notification settings given (logic/alerts.py), checked; the --no-* ones as None."""
    from hermes_cron.logic.alerts import HOOK_TIMEOUT, check_alerts
    from hermes_cron.logic.durations import parse_duration

    given = {k: opts[k] for k in ("on_failure", "on_success", "notify_on") if opts.get(k) is not None}
    if opts.get("notify"):
        given["notify"] = list(opts["notify"])
    if opts.get("hook_timeout") is not None:
        given["hook_timeout"] = parse_duration(opts["hook_timeout"], "hook timeout", HOOK_TIMEOUT)
    out: dict[str, Any] = dict(check_alerts(given, "notifications"))
    for key in ("on_failure", "on_success", "notify"):
        if opts.get(f"no_{key}"):
            if key in out:
                raise InvalidInput(f"--{key.replace('_', '-')} and --no-{key.replace('_', '-')} say opposite things")
            out[key] = () if key == "notify" else None
    return out


def _job_options(f, for_edit: bool = False):
    options = [
        click.option("--schedule", "-s", metavar="EXPR", required=not for_edit,
                     help="Cron expression, @macro, 'every 5m', 'at 2026-12-01T09:00' or @reboot."),
        click.option("--tz", metavar="ZONE", shell_complete=complete_zones,
                     help="IANA time zone (default: this machine's)."),
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
        click.option("--jitter", metavar="DURATION", help="Start each run later by a stable per-job offset "
                     "below this (spreads jobs on one schedule; never before the slot)."),
        click.option("--retries", type=Count(0, 100), metavar="N",
                     help="Attempts more for a scheduled slot whose run failed or timed out (default 0)."),
        click.option("--retry-delay", metavar="DURATION", help="Before the first retry, doubled for each next "
                     "one, with up to 10% jitter (default 10s)."),
        click.option("--retry-max-delay", metavar="DURATION", help="The longest wait between attempts (default 10m)."),
        click.option("--ping", metavar="URL", help="Dead-man's switch: URL/start when a run starts, URL on "
                     "success, URL/<exit code> or URL/fail otherwise (Healthchecks.io's conventions)."),
        click.option("--on-lost", type=click.Choice(["record", "rerun"]),
                     help="Shared store: a run whose host died is recorded lost (default), or run again once "
                     "elsewhere (for jobs safe to repeat)."),
        *ALERT_OPTIONS,
    ]
    if for_edit:
        options += [
            click.option("--no-timeout", is_flag=True, help="Remove the timeout."),
            click.option("--no-cwd", is_flag=True, help="Use the default working directory."),
            click.option("--unset-env", multiple=True, metavar="K", help="Remove an environment variable."),
            click.option("--no-shell", is_flag=True, help="COMMAND is an argv list."),
            click.option("--no-ping", is_flag=True, help="Remove the ping URL."),
            *NO_ALERT_OPTIONS,
        ]
    else:
        options.append(click.option("--paused", is_flag=True, help="Add the job paused."))
    for option in reversed(options):
        f = option(f)
    return f


def _edit_options(f):
    return _job_options(f, for_edit=True)


def _zone_prefix(fields: dict[str, Any]) -> dict[str, Any]:
    """`CRON_TZ=ZONE EXPR` (or `TZ=ZONE EXPR`), as cronie takes it: the zone moves to the job's
    zone and the expression stays; with a different --tz, which one is meant can't be known."""
    from hermes_cron.logic.cronexpr import TZ_PREFIX

    m = TZ_PREFIX.match(" ".join(str(fields.get("schedule") or "").split()))
    if m is None:
        return {}
    if fields.get("tz") not in (None, m.group(2)):
        raise InvalidInput(f"the schedule says {m.group(1)}={m.group(2)} and --tz says {fields['tz']}; give one")
    return {"schedule": m.group(3), "tz": m.group(2)}


def _common_fields(opts: dict[str, Any]) -> dict[str, Any]:
    from hermes_cron.logic.durations import KILL_GRACE, MISFIRE_GRACE, TIMEOUT, parse_duration

    out: dict[str, Any] = {}
    if opts.get("schedule") is not None:
        out["schedule"] = opts["schedule"]
    if opts.get("tz") is not None:
        out["tz"] = opts["tz"]
    out.update(_zone_prefix(out))
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
    if opts.get("jitter") is not None:
        from hermes_cron.logic.durations import JITTER

        out["jitter"] = parse_duration(opts["jitter"], "jitter", JITTER) if opts["jitter"] not in ("0", "") else 0.0
    if opts.get("retries") is not None:
        out["retries"] = opts["retries"]
    for key in ("retry_delay", "retry_max_delay"):
        if opts.get(key) is not None:
            from hermes_cron.logic.jobs import RETRY_DELAY

            out[key] = parse_duration(opts[key], key.replace("_", " "), RETRY_DELAY)
    if opts.get("ping") is not None:
        from hermes_cron.logic.jobs import check_ping_url

        out["ping"] = check_ping_url(opts["ping"], "ping URL")
    if opts.get("on_lost") is not None:
        out["on_lost"] = opts["on_lost"]
    out.update(alert_fields(opts))
    return out


# The daemon's options (flag, click type, default, help for `run`), from their click-free
# definitions (contract/command.py's RUN_SPEC, which cli/quick.py reads as well).
_KINDS = {"seconds": lambda o: Seconds(*o.allowed), "count": lambda o: Count(*o.allowed), "text": lambda o: str,
          "choice": lambda o: click.Choice(o.allowed), "file": lambda o: click.Path(dir_okay=False)}
DAEMON_OPTIONS: list[tuple[str, Any, Any, str | None]] = [
    (o.flag, _KINDS[o.kind](o), o.default, o.help) for o in RUN_SPEC]


def run_options(f):
    """`run`: each option with its default."""
    for flag, kind, default, text in reversed(DAEMON_OPTIONS):
        extra = {"default": default, "show_default": True} if default is not None else {}
        f = click.option(flag, type=kind, help=text, **extra)(f)
    return f


def passed_on_options(f):
    """`start` and `restart`: the same options, passed on to the daemon they start."""
    for flag, kind, _, _ in reversed(DAEMON_OPTIONS):
        text = "As for run (default: cron/daemon.log)." if flag == "--log-file" else "As for run."
        f = click.option(flag, type=kind, help=text)(f)
    return f
