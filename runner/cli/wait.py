"""Edge: `apply --wait` in a terminal — the progress of the rows, and what Ctrl-C says and does.
An interrupt ends the command, not the jobs: they keep running (and paying) until cancelled, so it
says so and names the command that stops them; a second Ctrl-C within a few seconds, or
--cancel-on-interrupt, cancels them through api.cancel. No logic of its own."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import click

from runner.cli.errors import err_console
from runner.errors import n
from runner.lazy import lazy_module

if TYPE_CHECKING:
    from runner import api
    from runner.planning.plan import Plan
    from runner.views import text as display
else:
    api = lazy_module("runner.api")
    display = lazy_module("runner.views.text")

EXIT_INTERRUPTED: Final = 130
SECOND_CTRL_C: Final = 5.0  # seconds in which a second Ctrl-C cancels the jobs


def converge(project: api.Project, backend: Any, *, allow_cancel: bool, poll_interval: float,
             timeout: float | None, say: Any) -> Plan:
    """api.converge with a progress bar of the rows answered (on a terminal only)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = err_console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("rows answered", total=None)

        def on_plan(p: Plan) -> None:
            total = sum(m.rows.total for m in p.manifests)
            finished = sum(m.rows.done + m.rows.failed for m in p.manifests)
            bar.update(task, total=total, completed=finished)

        return api.converge(project, backend=backend, allow_cancel=allow_cancel,
                            poll_interval=poll_interval, timeout=timeout, on_plan=on_plan,
                            say=say)


@contextlib.contextmanager
def honest_interrupt(project: api.Project, backend: Any, *, cancel: bool) -> Iterator[None]:
    """Around apply: on Ctrl-C, say which jobs keep running and how to stop them; cancel them at
    once with `cancel`, or when a second Ctrl-C comes within SECOND_CTRL_C seconds."""
    try:
        yield
    except KeyboardInterrupt:
        running = api.running(project, backend=backend)
        count = sum(len(jobs) for jobs in running.values())
        if not count:
            click.echo("interrupted; no job is running. Run the same command again to continue.",
                       err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        where = "on Vertex AI" if project.settings.backend == "vertex" else "on this machine"
        lines = [f"interrupted: {n(count, 'job')} {'keeps' if count == 1 else 'keep'} running "
                 f"(and paying) after this command ends, {where}:"]
        lines += [f"  {name}: {job}" for name, jobs in sorted(running.items()) for job in jobs]
        them = "it" if count == 1 else "them"
        lines.append(f"Stop {them} with: "
                     + "; ".join(f"batchrun cancel {name}" for name in sorted(running)))
        if not cancel:
            lines.append(f"(Ctrl-C again within {SECOND_CTRL_C:.0f} s cancels {them} now; run "
                         f"the same command again to wait for {them} instead)")
        click.echo("\n".join(lines), err=True)
        if not cancel:
            try:
                time.sleep(SECOND_CTRL_C)
            except KeyboardInterrupt:
                cancel = True
        if cancel:
            for name in sorted(running):
                click.echo(display.cancel_text(name, api.cancel(project, name, backend=backend)),
                           err=True)
            click.echo(f"What {'it' if count == 1 else 'they'} answered is collected by the "
                       "next apply; the other rows are sent again then.", err=True)
        else:
            click.echo("not cancelled: " + ("it keeps" if count == 1 else "they keep")
                       + " running.", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
