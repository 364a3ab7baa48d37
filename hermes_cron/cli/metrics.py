"""`hermes-cron metrics` (Prometheus text, e.g. for node_exporter's textfile collector) and
`hermes-cron serve` (/metrics, /healthz, /readyz over HTTP, read-only, loopback by default)."""

from __future__ import annotations

import click

from hermes_cron.cli.common import _ctx, _home_option, cli
from hermes_cron.errors import InvalidInput


@cli.command()
@_home_option
def metrics() -> None:
    """Print the metrics in Prometheus's text format."""
    from hermes_cron.app.metrics import exposition

    click.echo(exposition(_ctx().home).decode(), nl=False)


@cli.command()
@click.option("--listen", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT",
              help="Where to serve (loopback unless you say otherwise).")
@_home_option
def serve(listen: str) -> None:
    """Serve /metrics, /healthz (the daemon is alive) and /readyz (its last tick succeeded)."""
    from hermes_cron.app.serving import serve as run_server

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--listen {listen!r} is not HOST:PORT")
    run_server(_ctx().home, host.strip("[]"), int(port), lambda where: click.echo(f"serving {where}", err=True))
