"""`hermes-cron status` without click: the command that monitoring runs every few seconds starts in
the time Python takes plus what status reads (scripts/bench_status.py). Only the plain forms are
taken here: `[--home H] [--store URL] status [--json] [--home H] [--store URL]`; anything else
(--help, --cluster, a typo) goes to the click layer, which behaves the same and says more."""

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


def quick(args: list[str]) -> None:
    """Run `status` and exit, when `args` is a plain status command line; else return."""
    opts = parse(args)
    if opts is not None:
        guarded(lambda: _status(opts))


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

    report, code = status_report(Context(opts["--home"], {}, opts["--store"]).home)
    if opts["json"]:
        import json

        print(json.dumps({**report, "exit_code": code}, indent=2, ensure_ascii=False))
    else:
        from hermes_cron.cli.render import status_lines

        print("\n".join(status_lines(report, code, time.time())))
    return code
