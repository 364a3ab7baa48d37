"""Reading a user crontab (crontab(5), as Vixie cron and cronie read it) into jobs. Pure code.

- Blank lines and `#` comments are skipped.
- `NAME = value` lines set the environment of the job lines after them (a value may be quoted);
  `CRON_TZ=ZONE` sets the zone their schedules are read in; `SHELL` runs their commands with
  that shell instead of /bin/sh; `MAILTO` can't be honoured (hermes-cron keeps each run's output
  in its history instead), so it gives a note, not an error.
- A job line is five fields and a command, or a macro (`@daily`, `@reboot`, ...) and a command.
- In the command, the first unescaped `%` ends it: the rest is the command's standard input,
  each further `%` a newline; `\\%` is a literal `%`.
Each job gets a stable name from its command and schedule (the same line imports under the same
name again). What can't be expressed is refused with its line number.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field

from hermes_cron.errors import InvalidInput
from hermes_cron.logic.jobs import Job
from hermes_cron.logic.names import check_name

_ENV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_MACRO = re.compile(r"^\s*(@[A-Za-z]+)\s+(.*)$")
_FIELDS = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*)$")


@dataclass
class Parsed:
    """A crontab read: its jobs and errors and notes, each with its line number."""

    jobs: list[tuple[int, Job]] = field(default_factory=list)  # (line number, job)
    errors: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def split_percent(command: str) -> tuple[str, str | None]:
    """The command and its standard input, as crontab(5) splits them at `%`."""
    out, i = [], 0
    while i < len(command):
        c = command[i]
        if c == "\\" and i + 1 < len(command) and command[i + 1] == "%":
            out.append("%")
            i += 2
            continue
        if c == "%":
            rest = command[i + 1:].replace("\\%", "\0").replace("%", "\n").replace("\0", "%")
            return "".join(out), rest
        out.append(c)
        i += 1
    return "".join(out), None


def stable_name(command: str, schedule: str, taken: set[str]) -> str:
    """A name from the command's program and a hash of the line: the same line, the same name."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", (words[0].rsplit("/", 1)[-1] if words else "job"))[:40].strip("-")
    digest = hashlib.sha256(f"{schedule}\0{command}".encode()).hexdigest()
    name = f"{base or 'job'}-{digest[:6]}"
    k = 6
    while name in taken:
        k += 1
        name = f"{base or 'job'}-{digest[:k]}"
    return check_name(name)


def parse_crontab(text: str, default_tz: str, created: float) -> Parsed:
    out = Parsed()
    env: dict[str, str] = {}
    tz, shell = default_tz, "/bin/sh"
    taken: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV.match(line)
        if m and not line.startswith("@") and " " not in m.group(1):
            name, value = m.group(1), _unquote(m.group(2))
            if name == "CRON_TZ":
                tz = value
            elif name == "SHELL":
                shell = value
            elif name == "MAILTO":
                if value:
                    out.notes.append((number, f"MAILTO={value} is not honoured: each run's output is in "
                                              "`hermes-cron logs`"))
            else:
                env[name] = value
            continue
        m = _MACRO.match(line)
        if m:
            schedule, command = m.group(1).lower(), m.group(2)
        else:
            m = _FIELDS.match(line)
            if not m:
                out.errors.append((number, "not a job line (five fields and a command, or @macro and a command), "
                                           "nor NAME=value"))
                continue
            schedule, command = " ".join(m.groups()[:5]), m.group(6)
        command, stdin = split_percent(command)
        if not command.strip():
            out.errors.append((number, "the command is empty"))
            continue
        if stdin is not None:
            command = f"printf %s {shlex.quote(stdin)} | ( {command} )"
        argv = (command,) if shell == "/bin/sh" else (shell, "-c", command)
        try:
            name = stable_name(command, schedule, taken)
            job = Job(name, argv, schedule, tz, shell=shell == "/bin/sh", env=tuple(sorted(env.items())),
                      created=created, anchor=float(int(created)))
        except InvalidInput as e:
            out.errors.append((number, str(e)))
            continue
        taken.add(name)
        out.jobs.append((number, job))
    return out
