"""Edge: the `batchrun` click group and what every command shares — the global options, the
project opened from them, events said on stderr. The commands register on `main` from their own
modules (commands, hands, review), which import this one and never each other."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.backends import REGISTRY
from runner.cli.errors import print_diagnostics
from runner.lazy import lazy_module

if TYPE_CHECKING:
    from runner import api
    from runner.events import Event
    from runner.views import text as display
else:  # loaded by the command that needs them: `batchrun --help` stays fast
    api = lazy_module("runner.api")
    display = lazy_module("runner.views.text")

# planview.VIEWS' names, spelled here so --help need not import the plan (a test holds them equal).
PLAN_FORMATS = ("text", "json", "markdown")


def open_project(ctx: click.Context, paths: tuple[str, ...] = (), targets: tuple[str, ...] = (),
             selectors: tuple[str, ...] = (), *, needs_project: bool = True) -> api.Project:
    """The project; a command that keeps state refuses at once without a batchrun.yaml."""
    obj = ctx.obj
    project = api.load_project(
        paths, config=obj["config"], environment=obj["env"],
        flags={"backend": obj["backend"], "project": obj["project"], "region": obj["region"]},
        targets=targets, selectors=selectors, require=needs_project)
    print_diagnostics(list(project.warnings))
    return project


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False),
              help="batchrun.yaml to use (default: the nearest one upwards).")
@click.option("--env", "env", help="Named environment from batchrun.yaml (or BATCHRUN_ENV).")
@click.option("--backend", type=click.Choice(list(REGISTRY)), help="Override the backend.")
@click.option("--project", help="Override the Google Cloud project.")
@click.option("--region", help="Override the Vertex region.")
@click.option("--debug", is_flag=True,
              help="Show tracebacks, and what each command reads (destination reads, bytes scanned).")
@click.version_option(package_name="batchrun-vertex")
@click.pass_context
def main(ctx: click.Context, config: Path | None, env: str | None, backend: str | None,
         project: str | None, region: str | None, debug: bool) -> None:
    """Declarative LLM batch prediction: plan and apply YAML manifests, row by row."""
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, env=env, backend=backend, project=project, region=region,
                   debug=debug)
    if debug:
        import logging

        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("debug: %(message)s"))
        logging.getLogger("runner").addHandler(handler)
        logging.getLogger("runner").setLevel(logging.DEBUG)



def say(event: Event) -> None:
    click.echo(display.event_text(event), err=True)
