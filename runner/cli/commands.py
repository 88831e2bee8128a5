"""Edge: the main click commands (plan, apply, status, results...), registered on the group of
cli/group.py. Parses flags, calls runner.api, prints through views; errors and exit codes are
cli/errors.py's. Holds no logic of its own."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runner.cli.errors import EXIT_CHANGES, EXIT_INCOMPLETE, handle_errors, print_diagnostics
from runner.cli.group import PLAN_FORMATS, main, open_project, say
from runner.errors import ApprovalError, BatchrunError
from runner.lazy import lazy_module

if TYPE_CHECKING:
    from runner import api
    from runner.answers.compare import Preview
    from runner.planning import saved as planfile
    from runner.planning.plan import Plan
    from runner.views import plan as planview
    from runner.views import text as display
else:  # loaded by the command that needs them: `batchrun --help` stays fast
    api = lazy_module("runner.api")
    display = lazy_module("runner.views.text")
    planfile = lazy_module("runner.planning.saved")
    planview = lazy_module("runner.views.plan")

@main.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", default=None, metavar="PUBLISHER/MODEL",
              help="The example manifest's chat model (see `batchrun models --task chat`).")
@click.pass_context
@handle_errors
def init(ctx: click.Context, folder: Path, model: str | None) -> None:
    """Start a project in FOLDER: batchrun.yaml, an example manifest and data, .gitignore lines,
    the CI workflow and the JSON Schemas for editors. Never overwrites a file."""
    from runner.project import scaffold

    written = scaffold.init(folder, model or scaffold.DEFAULT_MODEL)
    click.echo(f"Started a batchrun project in {folder}:")
    for path in written:
        click.echo(f"  {path}")
    try:
        here = Path.cwd().resolve()
    except FileNotFoundError:  # the folder the command was started in is gone
        here = None
    go = "" if folder.resolve() == here else f"  cd {folder}\n"
    click.echo(scaffold.NEXT.replace("Next:\n", "Next:\n" + go))


@main.command()
@click.option("--task", type=click.Choice(["chat", "embeddings"]), help="Only models of this task.")
@click.option("--region", help="Only models whose batch jobs run in this region.")
@click.option("--json", "as_json", is_flag=True, help="One versioned JSON document.")
@handle_errors
def models(task: str | None, region: str | None, as_json: bool) -> None:
    """The catalogue: each model's task, batch regions, status (and how sure), batch price and
    source. Needs no project."""
    from runner.models import info as modelinfo
    from runner.spec import Task
    from runner.views import models as modelsview

    chosen = Task(task) if task else None
    listed = modelinfo.listing(chosen, region)
    empty = [t.value for t in Task if chosen in (None, t) and modelinfo.none_current(t)]
    click.echo((modelsview.models_json if as_json else modelsview.models_text)(listed, empty),
               nl=False)


@main.command()
@click.argument("name", type=click.Choice(["manifest", "project", "plan"]))
@click.pass_context
@handle_errors
def schema(ctx: click.Context, name: str) -> None:
    """Print the JSON Schema of a manifest, of batchrun.yaml, or of a saved plan (for editors)."""
    from runner.project.schemas import schema_path

    click.echo(schema_path(f"{name}.v1").read_text(encoding="utf-8"), nl=False)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.pass_context
@handle_errors
def validate(ctx: click.Context, paths: tuple[str, ...]) -> None:
    """Check manifests: YAML, schema, templates, labels. Needs no credentials."""
    project = open_project(ctx, paths, needs_project=False)
    n = len(project.manifests)
    click.echo(f"{n} manifest{'s' if n != 1 else ''} valid: "
               + ", ".join(m.name for m in project.manifests))


@main.command()
@click.argument("manifest")
@click.option("--name", help="Which manifest of a multi-document file.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows.")
@click.pass_context
@handle_errors
def render(ctx: click.Context, manifest: str, name: str | None, limit: int | None) -> None:
    """Print the request rows of MANIFEST (a name or a file) exactly as they would be sent."""
    is_file = Path(manifest).is_file()
    project = open_project(ctx, (manifest,) if is_file else (), needs_project=False)
    if is_file and name is None:
        if len(project.manifests) != 1:
            raise BatchrunError(f"{manifest} holds {len(project.manifests)} manifests; "
                                "pick one with --name")
        name = project.manifests[0].name
    out = sys.stdout.buffer
    for line in api.render(project, name or manifest, limit=limit):
        out.write(line + b"\n")
    out.flush()


def _emit_plan(the_plan: Plan, fmt: str, previews: list[Preview] | None = None) -> None:
    if previews is not None and fmt == "json":
        import orjson

        doc = orjson.loads(planview.VIEWS["json"].render(the_plan))
        doc["previews"] = [p.to_json() for p in previews]
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(planview.VIEWS[fmt].render(the_plan), nl=False)
    if previews:
        from runner.cli import review as cli_review

        click.echo(cli_review.preview_text(previews, the_plan, fmt), nl=False)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text",
              show_default=True, help="json: one versioned document; markdown: a PR comment.")
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="Save the plan, for `batchrun apply FILE`.")
@click.option("--detailed-exitcode", is_flag=True,
              help=f"Exit {EXIT_CHANGES} when there are changes, 0 when there are none.")
@click.option("--prune", is_flag=True, help="Plan to cancel running jobs of removed manifests.")
@click.option("--target", "targets", multiple=True,
              help="Only this manifest; a glob ('review*') too (repeatable).")
@click.option("--select", "selectors", multiple=True,
              help="Only manifests with this label: label:KEY=VALUE (repeatable).")
@click.option("--exact-tokens", is_flag=True,
              help="Ask Vertex to count Claude input tokens (one call per row to send).")
@click.option("--preview", "preview_rows", type=click.IntRange(min=1),
              help="Run each changed spec on N rows answered before and show old vs new (a small "
                   "paid job; its answers count when the change is applied).")
@click.pass_context
@handle_errors
def plan(ctx: click.Context, paths: tuple[str, ...], as_json: bool, fmt: str, out: Path | None,
         detailed_exitcode: bool, prune: bool, targets: tuple[str, ...],
         selectors: tuple[str, ...], exact_tokens: bool, preview_rows: int | None) -> None:
    """Show what apply would do: rows done, in flight, to do, failed, tokens, cost. Read-only
    (but with --preview, which runs a sample)."""
    project = open_project(ctx, paths, targets, selectors)
    if out is not None:  # refused before the work: a preview is paid for
        api.check_output(project, out, "plan --out")
    the_plan = api.plan(project, prune=prune, exact_tokens=exact_tokens)
    if preview_rows is not None:
        from runner.cli import review as cli_review

        previews = cli_review.run_previews(project, the_plan, preview_rows, timeout=3600)
        if previews:  # the previews' answers are done now: the plan says what is left
            the_plan = api.plan(project, prune=prune, exact_tokens=exact_tokens)
        _emit_plan(the_plan, "json" if as_json else fmt, previews)
        cli_review.check_previews(previews)
    else:
        _emit_plan(the_plan, "json" if as_json else fmt)
    for note in api.project_notes(project):  # once, after the plan, on stderr
        click.echo(display.note_text(note), err=True)
    if out is not None:
        api.save_plan(project, the_plan, out, flag="plan --out")
        click.echo(f"Saved the plan to {out}; `batchrun apply {out}` carries out exactly this plan.",
                   err=True)
    api.check_budget(the_plan)
    if detailed_exitcode and the_plan.has_changes:
        ctx.exit(EXIT_CHANGES)


def _approve(the_plan: Plan) -> None:
    if not sys.stdin.isatty():
        raise ApprovalError("stdin is not a terminal, so nobody can approve; pass --auto-approve")
    answer = click.prompt("Apply these changes? Only 'yes' is accepted", default="",
                          show_default=False)
    if answer.strip() != "yes":
        raise ApprovalError("apply cancelled; nothing was changed")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--auto-approve", is_flag=True, help="Apply without asking.")
@click.option("--wait", is_flag=True, help="Repeat plan and apply until every row is answered.")
@click.option("--prune", is_flag=True, help="Cancel running jobs of removed manifests.")
@click.option("--allow-cancel", is_flag=True, help="Let apply cancel jobs of protected manifests.")
@click.option("--target", "targets", multiple=True,
              help="Only this manifest; a glob ('review*') too (repeatable).")
@click.option("--select", "selectors", multiple=True,
              help="Only manifests with this label: label:KEY=VALUE (repeatable).")
@click.option("--poll-interval", type=float, default=2.0, show_default=True,
              help="Seconds between checks with --wait.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@click.option("--cancel-on-interrupt", is_flag=True,
              help="Ctrl-C cancels the running jobs (else they keep running, and paying, until "
                   "`batchrun cancel NAME` or a second Ctrl-C).")
@click.pass_context
@handle_errors
def apply(ctx: click.Context, paths: tuple[str, ...], auto_approve: bool, wait: bool, prune: bool,
          allow_cancel: bool, targets: tuple[str, ...], selectors: tuple[str, ...],
          poll_interval: float, timeout: float | None, cancel_on_interrupt: bool) -> None:
    """Carry out the plan (or a saved plan FILE): collect finished jobs, create jobs for rows to do."""
    if len(paths) == 1 and planfile.is_plan_file(Path(paths[0])):
        obj = ctx.obj
        saved = api.apply_saved(
            Path(paths[0]), allow_cancel=allow_cancel, say=say, config=obj["config"],
            environment=obj["env"], flags={"backend": obj["backend"], "project": obj["project"],
                                           "region": obj["region"]})
        click.echo(display.applied_text(saved, saved=True))
        return
    project = open_project(ctx, paths, targets, selectors)
    backend = api.open_backend(project)
    from runner.cli import wait as cli_wait

    # If another apply sends the rows meanwhile, nothing is sent: on a terminal the new plan is
    # shown and asked again; otherwise it stops (RowsChangedError, exit 1).
    review = api.Review(show=lambda p: _emit_plan(p, "text"),
                        approve=(lambda _: None) if auto_approve else _approve,
                        refused=lambda exc: print_diagnostics(exc.diagnostics),
                        again=not auto_approve and sys.stdin.isatty())
    with cli_wait.honest_interrupt(project, backend, cancel=cancel_on_interrupt):
        report = api.apply_reviewed(project, review, backend=backend, prune=prune,
                                    allow_cancel=allow_cancel, say=say, wait=wait)
        if report is None:
            click.echo("Nothing to do.")
            return
        if not wait:
            click.echo(display.applied_text(report))
            return
        final = cli_wait.converge(project, backend, allow_cancel=allow_cancel,
                                  poll_interval=poll_interval, timeout=timeout, say=say)
    click.echo(planview.converged_text(final))
    if any(m.rows.failed or m.blocked for m in final.manifests):
        ctx.exit(EXIT_INCOMPLETE)


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True,
              help="One versioned document: the jobs and the usage.")
@click.pass_context
@handle_errors
def status(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Jobs per manifest: state, progress, age."""
    project = open_project(ctx)
    jobs = api.status(project, name)
    if as_json:
        click.echo(display.status_json(jobs, api.usage(project, name)))
        return
    rows = display.status_rows(jobs)
    if not rows:
        click.echo("No jobs yet. Run `batchrun apply` to create them.")
        return
    from rich.console import Console

    console = Console(highlight=False, width=max(Console().width, 120))
    display.print_table(console, display.STATUS_COLUMNS, rows)
    for used in api.usage(project, name):
        if used.rows or used.states:
            click.echo(display.usage_text(used))


@main.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]),
              default="table", show_default=True,
              help="json: one versioned document (rows and summary); jsonl: a row a line.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.pass_context
@handle_errors
def results(ctx: click.Context, name: str, fmt: str, as_json: bool) -> None:
    """The collected answers of NAME, with a summary of failures."""
    project = open_project(ctx)
    rows: Iterator[dict[str, Any]] = api.results(project, name)
    if as_json or fmt == "json":
        manifest = project.manifest(name)
        display.results_json(rows, sys.stdout.buffer, name, manifest.spec_hash)
        return
    if fmt == "jsonl":
        display.results_jsonl(rows, sys.stdout.buffer)
        return
    if fmt == "csv":
        display.results_csv(rows, sys.stdout)
        return
    manifest = project.manifest(name)
    from rich.console import Console

    console = Console(highlight=False, width=max(Console().width, 120))
    click.echo(display.results_view(console, name, rows, manifest.passthrough), nl=False)


# Registered on main by importing them: the hands-on commands, and the ones to look at a change.
from runner.cli import hands as cli_hands  # noqa: E402
from runner.cli import review as cli_review  # noqa: E402

__all__ = ["PLAN_FORMATS", "cli_hands", "cli_review", "main"]
