"""The daemon's command line, written once: how it is started (by `start`, `restart` and the
watchdog), which `run` options it takes, how a recorded command line is recognised as a
daemon's, and where a daemon started in the background writes its early errors."""

from __future__ import annotations

import os
import sys
from collections import namedtuple

from hermes_cron.contract.files import open_dir, open_private
from hermes_cron.contract.paths import Home

LOG_FORMATS = ("auto", "console", "json", "keyvalue")  # contract/logs.py's choices
LOG_LEVELS = ("debug", "info", "warning", "error")


# One option of `hermes-cron run`: its flag, kind (seconds, count, text, choice or file), the
# bounds of a number or the choices, its default and its help. cli/options.py makes the click
# options from these; cli/quick.py reads the plain forms of `run` without click.
RunOption = namedtuple("RunOption", "flag kind allowed default help")


RUN_SPEC = (
    RunOption("--tick-interval", "seconds", (0.1, 3600), 60.0, "Seconds between ticks; ticks fall on multiples of it."),
    RunOption("--heartbeat-every", "count", (1, 10_000), 5, "Write the heartbeat every N ticks."),
    RunOption("--max-concurrent", "count", (1, 100_000), None, "Most runs at once (default: no limit)."),
    RunOption("--ping", "text", (), None, "Ping this URL after every successful tick (a dead-man's switch for the "
              "daemon)."),
    RunOption("--lease", "seconds", (3, 3600), None, "Shared store: a run's lease, renewed every third of it "
              "(default: 3 ticks, at least 30 s)."),
    RunOption("--log-format", "choice", LOG_FORMATS, "auto", None),
    RunOption("--log-file", "file", (), None, "Append logs here (SIGHUP reopens it)."),
    RunOption("--log-level", "choice", LOG_LEVELS, "info", None),
)
# The options of `hermes-cron run` that `start`, `restart` and the watchdog pass on, each with
# a value.
RUN_OPTIONS = tuple(option.flag for option in RUN_SPEC)
STDERR_FILE = "daemon.stderr"
LOG_FILE = "daemon.log"


def daemon_argv(home: Home, run_args: list[str]) -> list[str]:
    """The one command line that starts a daemon: this installation's Python and package. A log
    file is always given (cron/daemon.log unless the options name one): a background daemon has
    no terminal to log to."""
    if "--log-file" not in run_args:
        run_args = [*run_args, "--log-file", os.path.join(home.cron, LOG_FILE)]
    store = ["--store", home.store] if home.store else []
    return [sys.executable, "-m", "hermes_cron", "--home", home.root, *store, "run", *run_args]


def run_args(values: dict[str, object]) -> list[str]:
    """`run` options from parsed values keyed by their Python names (tick_interval, ...); a log
    file is made absolute, since the daemon runs from /."""
    args: list[str] = []
    for flag in RUN_OPTIONS:
        value = values.get(flag[2:].replace("-", "_"))
        if value is not None:
            args += [flag, os.path.abspath(str(value)) if flag == "--log-file" else str(value)]
    return args


def recorded_run_options(argv: list[str]) -> list[str]:
    """The `run` options of a daemon's recorded command line, or [] if it holds anything that is
    not one of them with its value: a command line we did not write gives nothing."""
    if "run" not in argv:
        return []
    rest = argv[argv.index("run") + 1:]
    options: list[str] = []
    while rest:
        flag, _, inline = rest[0].partition("=")
        if flag not in RUN_OPTIONS or (not inline and len(rest) < 2):
            return []
        options += [flag, inline or rest[1]]
        rest = rest[1:] if inline else rest[2:]
    return options


def daemon_command(argv: list[str]) -> bool:
    """Whether `argv` runs the daemon: `PYTHON -m hermes_cron [--home H] run ...` or
    `[PYTHON] .../hermes-cron [--home H] run ...`, judged by position, never by substring."""
    rest: list[str]
    if len(argv) >= 3 and argv[1:3] == ["-m", "hermes_cron"]:
        rest = argv[3:]
    elif argv and os.path.basename(argv[0]) == "hermes-cron":
        rest = argv[1:]
    elif len(argv) >= 2 and os.path.basename(argv[1]) == "hermes-cron" and "python" in os.path.basename(argv[0]):
        rest = argv[2:]
    else:
        return False
    while rest and rest[0].startswith(("--home", "--store")):
        rest = rest[2:] if rest[0] in ("--home", "--store") else rest[1:]
    return bool(rest) and rest[0] == "run"


def open_stderr_file(home: Home, truncate: bool, owner: int | None = None) -> int:
    """Open cron/daemon.stderr for a daemon's early errors: no symlink followed, no hard link
    or special file written through, private, and given to `owner` (root writing for a user)."""
    dfd = open_dir(home.cron, 1, owner=owner)
    try:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
        return open_private(dfd, STDERR_FILE, flags, owner)
    finally:
        os.close(dfd)
