"""Click parameter types for the numbers users type: ranges with ASCII digits only, and seconds
that must be finite; and the log formats and levels both programs offer. Shared by the
`hermes-cron` and `hermes-cron-watchdog` commands, and light: `status` imports it."""

from __future__ import annotations

import math
from typing import Any

import click

from hermes_cron.contract.command import LOG_FORMATS, LOG_LEVELS  # noqa: F401 - (the watchdog's too)


class Count(click.IntRange):
    """A whole number within a range, in ASCII digits (int() would take '５')."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not value.isascii():
            self.fail(f"{value!r} is not a number in ASCII digits", param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.FloatRange):
    """A number of seconds within a range, in ASCII digits; nan and inf are no numbers of seconds
    (FloatRange lets nan through)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not value.isascii():
            self.fail(f"{value!r} is not a number in ASCII digits", param, ctx)
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv
