"""Commands on jobs at work: trigger, history, logs."""
# The store, engine and schedule code are imported inside the commands on purpose: every
# command's start imports this module, and `status` must start fast.

from __future__ import annotations

import os
import sys

import click

from hermes_cron.cli.common import _ctx, _emit_json, _home_option, cli, complete_job_names
from hermes_cron.cli.render import history_header, history_row, output_tail, run_status
from hermes_cron.contract.cli_types import Count


@cli.command()
@click.argument("name", shell_complete=complete_job_names)
@click.option("--wait", is_flag=True, help="Follow the run to its end and exit with the job's exit status.")
@_home_option
def trigger(name: str, wait: bool) -> None:
    """Run a job now (the overlap policy holds). Asks a running daemon; without one, runs it here."""
    from hermes_cron.app.runs import trigger as trigger_job, wait_run
    from hermes_cron.logic.run import exit_status

    home = _ctx().home
    from hermes_cron.app.hermes_view import resolve

    name = resolve(home, name)
    run_id, here = trigger_job(home, name, wait=wait)
    run = wait_run(home, run_id) if wait else None
    if run is None:
        where = " (no daemon is running: it was started here, in the background; see it with: " \
                f"hermes-cron history {name})" if here else ""
        click.echo(f"triggered {name}: run {run_id}{where}")
        return
    click.echo(f"{name} run {run_id}: {run_status(run)}")
    if run.outcome is not None and run.outcome.failing:  # say why, and what the job said last
        from hermes_cron.store.runfiles import RunFiles

        if run.reason:
            click.echo(f"  reason: {run.reason}")
        tail = output_tail(_read_output(RunFiles(home.run_dir(run.job, run.id)), 0))
        if tail:
            click.echo("  output (last lines):")
            click.echo("\n".join(f"    {line}" for line in tail))
            click.echo(f"  (all of it: hermes-cron logs {name} --run {run_id})")
    if wait:
        sys.exit(exit_status(run.outcome, run.exit_code, run.signal))



@cli.command()
@click.argument("name", required=False, shell_complete=complete_job_names)
@click.option("--limit", "-n", default=20, show_default=True, type=Count(0, 1_000_000), help="0 for all.")
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              type=click.Choice(["succeeded", "failed", "timed_out", "interrupted", "skipped", "missed", "lost"]),
              help="Only runs that ended so (repeatable): succeeded, failed, timed_out, interrupted, "
                   "skipped, missed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_home_option
def history(name: str | None, limit: int, statuses: tuple[str, ...], as_json: bool) -> None:
    """Runs, newest first (a job's, or with no NAME every job's): scheduled time, start, duration,
    status with exit code or signal, and the reason (with --json, also each run's notifications
    and how they went)."""
    from hermes_cron.app.runs import history as job_history
    from hermes_cron.logic.run import Outcome

    from hermes_cron.app.hermes_view import resolve

    name = resolve(_ctx().home, name) if name else name
    found = job_history(_ctx().home, name, limit, tuple(Outcome(s) for s in statuses))
    if as_json:
        from hermes_cron.app.alerts import with_events

        _emit_json(with_events(_ctx().home, found))
        return
    if not found:
        which = f" of {name}" if name else ""
        which += f" that ended {' or '.join(statuses)}" if statuses else ""
        hint = f" (run it now with: hermes-cron trigger {name} --wait)" if name and not statuses else ""
        click.echo(f"no runs{which} yet{hint}")
        return
    click.echo(history_header(with_job=name is None))
    for r in found:
        click.echo(history_row(r, with_job=name is None))


@cli.command()
@click.argument("name", shell_complete=complete_job_names)
@click.option("--run", "run_id", type=Count(1, 2**63 - 1), help="Which run (default: the latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing while the run goes on.")
@_home_option
def logs(name: str, run_id: int | None, follow: bool) -> None:
    """Print a run's output (stdout and stderr), the latest run by default."""
    import time

    from hermes_cron.app.runs import run_output
    from hermes_cron.store.runfiles import RunFiles

    home = _ctx().home
    from hermes_cron.app.hermes_view import resolve

    name = resolve(home, name)
    run = run_output(home, name, run_id)
    files = RunFiles(home.run_dir(run.job, run.id))
    out = sys.stdout.buffer
    if home.store is not None and not os.path.isdir(files.folder):  # run on another host of the cluster
        from hermes_cron.app.runs import output_copy

        node, copy = output_copy(home, run.id)
        click.echo(f"(run {run.id} ran on {node or 'another host'}; its output is there, this is the copy kept in "
                   "the shared store: at most its last 64 KiB)", err=True)
        out.write((copy or "").encode())
        out.flush()
        return
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
