"""`hermes-cron status` and `run` without click. The command that monitoring runs every few seconds
starts in the time Python takes plus what status reads (scripts/bench_status.py), and the daemon
never holds click and the other commands in its memory (cli/rundaemon.py). Only the plain forms
are taken here: `[--home H] [--store URL] status [--json] [--home H] [--store URL]`, and `run`
with its options (contract/command.py's RUN_SPEC), each given once with a valid value;
anything else (--help, --cluster, a value out of range, a typo) goes to the click layer, which
behaves the same and says more."""

from __future__ import annotations

import sys

_VALUED = ("--home", "--store")


def parse(args: list[str]) -> dict | None:
    """The options of a plain `status` command line, or None if it isn't one."""
    found: dict = {"json": False, "--home": None, "--store": None}
    seen_status = False
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, value = a.partition("=")
        if name in _VALUED:
            if not eq:
                if i + 1 >= len(args) or not args[i + 1] or args[i + 1].startswith("-"):
                    return None
                value = args[i + 1]
                i += 1
            if not value:
                return None
            found[name] = value
        elif a == "status" and not seen_status:
            seen_status = True
        elif a == "--json" and seen_status and not found["json"]:
            found["json"] = True
        else:
            return None
        i += 1
    return found if seen_status else None


def parse_run(args: list[str]) -> dict | None:
    """The home, store and `run` options (by their Python names, defaults filled in) of a plain
    `run` command line, or None if it isn't one."""
    if "run" not in args:
        return None
    from hermes_cron.contract.command import RUN_SPEC

    spec = {option.flag: option for option in RUN_SPEC}
    found: dict = {"--home": None, "--store": None}
    values: dict = {}
    seen_run = False
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, value = a.partition("=")
        if name in _VALUED or (seen_run and name in spec):
            if not eq:
                if i + 1 >= len(args):
                    return None
                value = args[i + 1]
                i += 1
            if not value or value.startswith("-") or name in values:
                return None
            if name in _VALUED:
                found[name] = value
            else:
                values[name] = _value(spec[name], value)
                if values[name] is None:
                    return None
        elif a == "run" and not seen_run:
            seen_run = True
        else:
            return None
        i += 1
    if not seen_run:
        return None
    found.update({o.flag[2:].replace("-", "_"): values.get(o.flag, o.default) for o in RUN_SPEC})
    return found


def _value(option, text: str) -> object:
    """`text` as the option's value, or None unless it is plainly valid (click then decides)."""
    if option.kind in ("seconds", "count"):
        digits = text.replace(".", "", 1) if option.kind == "seconds" else text
        if not (digits.isascii() and digits.isdigit()):
            return None
        number = float(text) if option.kind == "seconds" else int(text)
        low, high = option.allowed
        return number if low <= number <= high else None
    if option.kind == "choice":
        return text if text in option.allowed else None
    if option.kind == "file":
        import os

        return None if os.path.isdir(text) else text  # (a folder: click's error)
    return text


def quick(args: list[str]) -> None:
    """Run `status` or `run` and exit, when `args` is a plain command line of one; else return."""
    opts = parse(args)
    if opts is not None:
        guarded(lambda: _status(opts))
    daemon = parse_run(args)
    if daemon is not None:
        guarded(lambda: _run(daemon))


def guarded(command) -> None:
    """Run `command` (returning an exit code) and exit with it; a user's fault is one line on
    stderr with its documented exit code, never a traceback (as cli/main.py does for click)."""
    from hermes_cron.errors import HermesCronError

    try:
        code = command()
    except HermesCronError as e:
        print(f"hermes-cron: {e}", file=sys.stderr)
        code = e.exit_code
    except BrokenPipeError:
        code = 0
    except KeyboardInterrupt:  # (as click says it)
        print("hermes-cron: aborted", file=sys.stderr)
        code = 130
    except OSError as e:  # a fault of the file system or the machine: named, never a traceback
        from hermes_cron.errors import file_system_error

        error = file_system_error(e, f"can't use {e.filename if e.filename else 'a file'}")
        print(f"hermes-cron: {error}", file=sys.stderr)
        code = error.exit_code
    sys.stdout.flush()
    sys.exit(code)


def _status(opts: dict) -> int:
    import time

    from hermes_cron.app.control import status_report
    from hermes_cron.cli.context import Context

    home = Context(opts["--home"], {}, opts["--store"]).home
    if home.hermes_here:  # status reads Hermes's jobs into dataclasses, which would load inspect
        from hermes_cron.contract.lazy import UNUSED, defer

        defer(*UNUSED)  # (as the daemon does)
    report, code = status_report(home)
    if opts["json"]:
        from hermes_cron.logic.json_lite import dumps  # (json.dumps's text, without json: monitoring runs this)

        print(dumps({**report, "exit_code": code}))
    else:
        from hermes_cron.cli.render import status_lines

        print("\n".join(status_lines(report, code, time.time())))
    return code


def _run(opts: dict) -> int:
    from hermes_cron.cli.context import Context
    from hermes_cron.cli.rundaemon import run_daemon

    home, store = opts.pop("--home"), opts.pop("--store")
    return run_daemon(Context(home, {}, store), **opts)
