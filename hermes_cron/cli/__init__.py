"""The `hermes-cron` command. `main` runs `status` (the command monitoring runs most often) and
the daemon's plain `run` command line on a quick path that loads neither click nor the other
commands (cli/quick.py: status starts faster, and the daemon's memory holds none of them), and
everything else through the click layer (cli/main.py): one module per group of commands, the
shared options written once (options.py) and the text built by pure functions (render.py).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors and documented exit codes (see README)."""
    from hermes_cron.cli.quick import quick

    quick(sys.argv[1:] if argv is None else argv)  # exits when it could do the whole command
    from hermes_cron.cli.main import main as full

    full(argv)
