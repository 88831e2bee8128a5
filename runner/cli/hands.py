"""Edge: the hands-on commands — cancel, import, retry, doctor, gc, unlock — for when a person
steps in. Parses flags, calls runner.api, prints through display; no logic of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from runner.cli.errors import handle_errors
from runner.cli.group import main, open_project, say
from runner.errors import n
from runner.lazy import lazy_module

if TYPE_CHECKING:
    from runner import api
    from runner.views import text as display
else:
    api = lazy_module("runner.api")
    display = lazy_module("runner.views.text")


@main.command()
@click.argument("name")
@click.option("--preview", is_flag=True, help="Also cancel NAME's running previews.")
@click.pass_context
@handle_errors
def cancel(ctx: click.Context, name: str, preview: bool) -> None:
    """Cancel NAME's running jobs, of its current and older specs (their rows are sent again by
    the next apply); a running preview only with --preview."""
    click.echo(display.cancel_text(name, api.cancel(open_project(ctx), name, preview=preview)))


@main.command(name="import")
@click.argument("name")
@click.argument("job")
@click.pass_context
@handle_errors
def import_(ctx: click.Context, name: str, job: str) -> None:
    """Adopt JOB, made outside batchrun, so its answers count as NAME's done rows."""
    count = api.import_job(open_project(ctx), name, job)
    click.echo(f"Imported {count} answers from {job} into {name}'s destination.")


@main.command()
@click.argument("name")
@click.option("--failed", is_flag=True, help="Also give rows that failed max_attempts times a fresh "
              "set of attempts.")
@click.option("--blocked", is_flag=True, help="Unblock the manifest (what retry always does).")
@click.option("--older-specs", is_flag=True,
              help="on_change: forward — re-run answers kept from older specs (see --limit).")
@click.option("--limit", type=click.IntRange(min=1), help="With --older-specs: at most N rows.")
@click.pass_context
@handle_errors
def retry(ctx: click.Context, name: str, failed: bool, blocked: bool, older_specs: bool,
          limit: int | None) -> None:
    """After fixing a cause: unblock NAME and, with --failed, retry its failed rows; with
    --older-specs, re-run answers kept from older specs. Sends nothing; the next apply does."""
    report = api.retry(open_project(ctx), name, failed=failed, say=say, older_specs=older_specs,
                       limit=limit)
    click.echo(display.retry_text(name, report.was_blocked, report.rows_reset, failed,
                                  report.older_rerun if older_specs else None))


@main.command()
@click.option("--canary", is_flag=True,
              help="Also write (and remove) a test object in staging, and run a two-row job per "
                   "model family and destination kind (costs a little). Without it doctor writes "
                   "nothing: permissions are asked of the services.")
@click.option("--timeout", type=float, default=3600, show_default=True,
              help="Seconds to wait for each canary job.")
@click.pass_context
@handle_errors
def doctor(ctx: click.Context, canary: bool, timeout: float) -> None:
    """Check what a first real run needs: credentials, project, services, staging, datasets and
    their regions, job quota, each manifest's model in its region. One line each, with the fix."""
    project = open_project(ctx)
    backend = api.open_backend(project)
    findings = api.doctor(project, backend=backend, write_probe=canary)
    if canary:
        findings += api.canary(project, backend=backend, timeout=timeout)
    click.echo(display.findings_text(findings), nl=False)
    if not all(f.ok for f in findings):
        ctx.exit(1)


@main.command()
@click.argument("name", required=False)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.pass_context
@handle_errors
def gc(ctx: click.Context, name: str | None, dry_run: bool) -> None:
    """Remove what collected jobs older than `retention` days left behind: staged inputs, BigQuery
    batchrun_in_/batchrun_out_ tables, outputs, job records. Only batchrun's own."""
    project = open_project(ctx)
    removed = api.gc(project, name, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for manifest, things in removed.items():
        click.echo(f"{manifest}: {verb} {n(len(things), 'item')}"
                   + "".join(f"\n  {thing}" for thing in things))


@main.command()
@click.argument("name")
@click.pass_context
@handle_errors
def unlock(ctx: click.Context, name: str) -> None:
    """Remove NAME's apply lock left by a process that died; refuses while its owner runs."""
    click.echo(api.unlock(open_project(ctx), name))
