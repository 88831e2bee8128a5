"""Edge: the commands for looking at a change before paying for it — `preview`, `plan --preview`'s
part, and `report`. Parses flags, calls runner.api, prints; no logic of its own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.cli.errors import handle_errors
from runner.cli.group import PLAN_FORMATS, main, open_project
from runner.errors import BatchrunError, BudgetError, error
from runner.lazy import lazy_module

if TYPE_CHECKING:
    from runner import api
    from runner.answers.compare import Preview
    from runner.planning import saved as planfile
    from runner.planning.plan import Plan
    from runner.views import plan as planview
    from runner.views import preview as previewview
    from runner.views import report_html as reporthtml
else:
    api = lazy_module("runner.api")
    planfile = lazy_module("runner.planning.saved")
    planview = lazy_module("runner.views.plan")
    previewview = lazy_module("runner.views.preview")
    reporthtml = lazy_module("runner.views.report_html")


def run_previews(project: api.Project, the_plan: Plan, rows: int, timeout: float
                 ) -> list[Preview]:
    """`plan --preview N`: a preview of each manifest with rows (those whose spec did not change
    have nothing to compare and are left out of the view)."""
    found = api.previews(project, [m.name for m in the_plan.manifests if m.rows.total], rows,
                         timeout=timeout, poll=min(5.0, timeout))
    return [p for p in found if p.state.value != "nothing"]


def preview_text(previews: list[Preview], the_plan: Plan, fmt: str) -> str:
    full = {m.name: m.estimate for m in the_plan.manifests}
    if fmt == "markdown":
        return "".join("\n" + previewview.markdown(p, full.get(p.manifest)) for p in previews)
    return "".join("\n" + previewview.text(p, full.get(p.manifest)) for p in previews)


def check_previews(previews: list[Preview]) -> None:
    """Exit 4 when a budget stopped the previews, 1 when one got no answer at all."""
    over = [p for p in previews if p.state.value == "over_budget"]
    if over:
        raise BudgetError([error(f"{previewview.over_budget_text(over[0])}; nothing was sent",
                                 hint="raise max_cost, or preview fewer rows (-n)")])
    failed = [p for p in previews if p.state.value == "failed"]
    if failed:
        raise BatchrunError([error(f"{failed[0].manifest}: {previewview.failed_text(failed[0])}",
                                   hint="the refusals above say why; fix the spec and preview "
                                        "again (refused rows are not sent again)")])


@main.command()
@click.argument("name")
@click.option("-n", "--rows", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many answered rows to run under the new spec.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True)
@click.option("--timeout", type=float, default=3600, show_default=True,
              help="Seconds to wait for the preview's job.")
@click.option("--html", "html_out", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the old-vs-new view as a self-contained HTML file.")
@click.pass_context
@handle_errors
def preview(ctx: click.Context, name: str, rows: int, fmt: str, timeout: float,
            html_out: Path | None) -> None:
    """Run NAME's changed spec on a sample of rows answered before, and show old vs new.

    The sample's answers are real answers under the new spec: once it is applied they count as
    done, never paid twice. max_cost applies to the preview too."""
    import orjson

    project = open_project(ctx)
    if html_out is not None:  # refused before the preview's job is paid for
        api.check_output(project, html_out, "preview --html")
    result = api.preview(project, name, rows, timeout=timeout, poll=min(5.0, timeout))
    if fmt == "json":
        click.echo(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(previewview.markdown(result) if fmt == "markdown" else previewview.text(result),
                   nl=False)
    if html_out is not None:
        api.write_output(project, html_out, reporthtml.preview(result), flag="preview --html")
        click.echo(f"Wrote {html_out}", err=True)
    check_previews([result])


@main.command()
@click.argument("name")
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False),
              help="The HTML file to write (default: NAME-report.html).")
@click.pass_context
@handle_errors
def report(ctx: click.Context, name: str, out: Path | None) -> None:
    """Write one self-contained HTML file about NAME's rows: totals, a chart, a searchable table."""
    project = open_project(ctx)
    path = out or Path(f"{name}-report.html")
    api.check_output(project, path, "report -o")
    data = api.report(project, name)
    api.write_output(project, path, reporthtml.report(data), flag="report -o")
    click.echo(f"Wrote {path} ({len(data.rows):,} rows); open it in a browser (no server, no "
               "network).")


@main.command()
@click.argument("planfile_path", metavar="PLANFILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text",
              show_default=True, help="As `batchrun plan` shows it.")
@handle_errors
def show(planfile_path: Path, as_json: bool, fmt: str) -> None:
    """Show a saved plan (`plan --out PLANFILE`) as `plan` showed it. Reads only the file: no
    project, credentials or backend needed."""
    import orjson

    saved, doc = planfile.read(planfile_path)
    fmt = "json" if as_json else fmt
    if fmt == "json":  # the plan's document, with when, by which batchrun and where it was made
        out = orjson.loads(planview.VIEWS["json"].render(saved))
        out.update({k: doc[k] for k in ("batchrun_version", "created_at", "settings", "project")
                    if k in doc})
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(planview.VIEWS[fmt].render(saved), nl=False)
    settings = doc.get("settings") or {}
    where = ", ".join(f"{k} {v}" for k, v in settings.items() if v)
    click.echo(f"(a saved plan made {doc.get('created_at', 'at an unknown time')} by batchrun "
               f"{doc.get('batchrun_version', '?')}" + (f" for {where}" if where else "")
               + f"; `batchrun apply {planfile_path}` carries it out, or refuses if the world "
               "changed since)", err=True)
