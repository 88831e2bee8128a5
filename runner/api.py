"""The public Python API (plan, apply, status, results...) that the CLI is built on; for notebooks and
schedulers. Orchestration only: loads the project, picks the backend, calls planner and apply.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import backends
from runner.answers import result
from runner.applying import waiting
from runner.applying.writer import Writer
from runner.backends.base import Backend, Finding
from runner.errors import (
    BatchrunError,
    LockError,
    RenderError,
    StalePlanError,
    error,
)
from runner.events import Listener, LockWait
from runner.lazy import lazy_module
from runner.ledger import rowpass as ledger
from runner.observe.status import JobStatus, Usage
from runner.planning.budget import check_budget
from runner.planning.prepared import Work
from runner.project import locate as project_finder
from runner.project import manifest as manifest_loader
from runner.project import outpath
from runner.project.locate import Project, load_project
from runner.spec import Manifest

if TYPE_CHECKING:
    import runner.applying.executor as applier
    from runner import estimate
    from runner.answers import collect
    from runner.answers.compare import Preview
    from runner.applying import asking, handson
    from runner.applying.asking import Review
    from runner.applying.handson import CancelReport, RetryReport
    from runner.applying.report import ApplyReport
    from runner.backends.stores import files as localfiles
    from runner.observe import doctor as doctor_checks
    from runner.observe import report as reporter
    from runner.observe import status as observe
    from runner.observe.report import ReportData
    from runner.planning import builder as planner
    from runner.planning import saved as planfile
    from runner.planning.plan import Plan
    from runner.preview import run as previewer
else:  # loaded by the call that needs them: `batchrun render` need not load apply or the planner
    applier = lazy_module("runner.applying.executor")
    asking = lazy_module("runner.applying.asking")
    collect = lazy_module("runner.answers.collect")
    doctor_checks = lazy_module("runner.observe.doctor")
    estimate = lazy_module("runner.estimate")
    handson = lazy_module("runner.applying.handson")
    localfiles = lazy_module("runner.backends.stores.files")
    observe = lazy_module("runner.observe.status")
    planfile = lazy_module("runner.planning.saved")
    planner = lazy_module("runner.planning.builder")
    previewer = lazy_module("runner.preview.run")
    reporter = lazy_module("runner.observe.report")

    def __getattr__(name: str) -> Any:  # ApplyReport, RetryReport...: the API's, loaded when used
        if name == "ApplyReport":
            return applier.ApplyReport
        if name == "Review":
            return asking.Review
        if name in ("RetryReport", "CancelReport"):
            return getattr(handson, name)
        raise AttributeError(f"module 'runner.api' has no attribute {name!r}")

__version__ = "0.1.0"


def open_backend(project: Project, *, stateful: bool = True) -> Backend:
    """The project's backend. Anything that keeps state (plan, apply, status, results...) needs a
    project, so that .batchrun/ and the destinations are the project's, wherever one stands."""
    if stateful and project.settings.config_file is None:
        raise project_finder.no_project_error(project.settings.root)
    return backends.get_backend(project.settings,
                                regions=sorted({m.region for m in project.manifests if m.region}))


def render(project: Project, name: str, *, limit: int | None = None,
           backend: Backend | None = None) -> Iterator[bytes]:
    """The request rows of one manifest, exactly as they would be sent."""
    m = project.manifest(name)
    backend = backend or open_backend(project, stateful=False)
    rows = ledger.rendered_rows(m, backend, project.settings, fingerprints=False)
    for row in islice(rows, limit):
        yield row.line


def plan(project: Project, *, backend: Backend | None = None, prune: bool = False,
         exact_tokens: bool = False, work: Work | None = None) -> Plan:
    """The plan; with `work`, the rows it would send are kept there for `apply` (close it after)."""
    return planner.make_plan(project.manifests, backend or open_backend(project), project.settings,
                             prune=prune, exact_tokens=exact_tokens, work=work)


def preview(project: Project, name: str, rows: int, *, backend: Backend | None = None,
            timeout: float = 3600.0, poll: float = 5.0) -> Preview:
    """Run the manifest's spec on a sample of `rows` rows answered under an older one (a small
    job, labelled a preview, whose answers count once the spec is applied) and compare; for a
    manifest with no older answers, on `rows` of its rows not answered yet, shown on their own."""
    return previews(project, [name], rows, backend=backend, timeout=timeout, poll=poll,
                    first_look=True)[0]


def previews(project: Project, names: Sequence[str], rows: int, *,
             backend: Backend | None = None, timeout: float = 3600.0,
             poll: float = 5.0, first_look: bool = False) -> list[Preview]:
    """`plan --preview`: a preview per manifest named, budgets checked over all before any job
    is created (each manifest's max_cost, the project's over the total)."""
    return previewer.previews([project.manifest(n) for n in names],
                              Writer(backend or open_backend(project)), project.settings, rows,
                              timeout=timeout, poll=poll, first_look=first_look)


def report(project: Project, name: str, *, backend: Backend | None = None) -> ReportData:
    """What `batchrun report` shows of one manifest: its stored rows, prompts, totals, by day."""
    return reporter.gather(project.manifest(name), backend or open_backend(project),
                           project.settings)


def apply(project: Project, the_plan: Plan | None = None, *, backend: Backend | None = None,
          prune: bool = False, allow_cancel: bool = False, say: Listener | None = None,
          work: Work | None = None) -> ApplyReport:
    """Carry out `the_plan` (a fresh one if None). `work` is what its row pass prepared; without
    it the rows are rendered again here, and if they are not the plan's, nothing is sent."""
    backend = backend or open_backend(project)
    with contextlib.ExitStack() as stack:
        if work is None:
            work = stack.enter_context(Work())
            fresh = plan(project, backend=backend, prune=prune, work=work)
            the_plan = the_plan or fresh
        assert the_plan is not None
        check_budget(the_plan)
        return applier.apply_plan(the_plan, project.manifests, Writer(backend), project.settings,
                                  work, allow_cancel=allow_cancel, say=say or (lambda _: None))


def apply_reviewed(project: Project, review: Review, *, backend: Backend | None = None,
                   prune: bool = False, allow_cancel: bool = False, say: Listener | None = None,
                   wait: bool = False) -> ApplyReport | None:
    """`batchrun apply`: the plan, shown to and approved by `review`, carried out with the rows its
    row pass kept; asked again when another apply sent them meanwhile. None: nothing to do (and
    not `wait`, which carries out an empty plan to collect what ends)."""
    backend = backend or open_backend(project)
    with Work() as work:
        first = plan(project, backend=backend, prune=prune, work=work)
        review.show(first)
        check_budget(first)
        if not first.has_changes and not wait:
            return None
        if first.has_changes:
            review.approve(first)
        return asking.carry_out(
            first, work, review,  # the plan asked again cancels the orphans the first would have
            replan=lambda w: plan(project, backend=backend, prune=prune, work=w),
            check=check_budget, apply=lambda p, w: applier.apply_plan(
                p, project.manifests, Writer(backend), project.settings, w,
                allow_cancel=allow_cancel, say=say or (lambda _: None)))


def check_output(project: Project, path: Path, flag: str) -> None:
    """Refuse (BatchrunError naming `flag`) an output path that is one of the project's files —
    a manifest, a source, a destination or its sidecar, a template, batchrun.yaml — or inside
    .batchrun/. Asked before the work too, so a refused path costs no paid preview."""
    settings = project.settings
    everything = [settings.root / p for p in settings.manifests] or [settings.root]
    files = manifest_loader.find_manifest_files([*everything, *(m.file for m in project.manifests)])
    problem = outpath.refusal(path, flag, settings, outpath.project_files(
        manifest_loader.scan_claims(files, settings), files))
    if problem is not None:
        raise BatchrunError([problem])


def write_output(project: Project, path: Path, text: str, *, flag: str) -> None:
    """Write a file a flag asked for (report -o, preview --html): checked by check_output, then
    whole or not at all (a temp file beside it, fsynced, renamed over it)."""
    check_output(project, path, flag)
    with localfiles.atomic_writer(path.resolve(), "w") as fh:
        fh.write(text)


def save_plan(project: Project, the_plan: Plan, path: Path, *, flag: str = "--out") -> None:
    """`plan --out FILE`: the plan for `apply FILE`, written like write_output."""
    write_output(project, path, planfile.dumps(path, the_plan, project.settings, __version__),
                 flag=flag)


def load_saved_plan(path: Path, **load: Any) -> tuple[Project, Plan, dict[str, Any]]:
    """A saved plan and the project it was made for (its manifests only), found from the plan's
    own record, not from the folder the command runs in."""
    saved, doc = planfile.read(path)
    if load.get("config") is None and not os.environ.get("BATCHRUN_CONFIG"):
        config = planfile.recorded_config(doc, path)
        if config is None:
            raise project_finder.no_project_error(path.resolve().parent)
        load = {**load, "config": config}
    project = load_project(**load)
    names = {m.name for m in saved.manifests}
    manifests = tuple(m for m in project.manifests if m.name in names)
    return Project(project.settings, manifests, project.warnings), saved, doc


def apply_saved(path: Path, *, backend: Backend | None = None, allow_cancel: bool = False,
                say: Listener | None = None, **load: Any) -> ApplyReport:
    """Apply exactly the plan in `path`, or refuse with what changed since it was made."""
    project, saved, doc = load_saved_plan(path, **load)
    backend = backend or open_backend(project)
    with Work() as work:
        fresh = plan(project, backend=backend, prune=any(o.cancel for o in saved.orphans),
                     work=work)
        reasons = planfile.stale_reasons(saved, fresh, doc.get("settings", {}), project.settings)
        if reasons:
            raise StalePlanError([error("the plan is stale: the world changed since it was made",
                                        file=str(path)), *reasons])
        return apply(project, saved, backend=backend, allow_cancel=allow_cancel, say=say,
                     work=work)


def converge(project: Project, *, backend: Backend | None = None, prune: bool = False,
             allow_cancel: bool = False, poll_interval: float = 1.0,
             timeout: float | None = None, on_plan: Callable[[Plan], None] | None = None,
             say: Listener | None = None) -> Plan:
    """apply --wait: plan and apply until no row is to do, in flight or waiting to be collected."""
    backend = backend or open_backend(project)
    started = time.monotonic()
    holds: set[tuple[str, str]] = set()  # (manifest, until) said already
    while True:
        with Work() as work:
            current = plan(project, backend=backend, prune=prune, work=work)
            if on_plan:
                on_plan(current)
            for event in waiting.holds(current, holds):
                if say:
                    say(event)
            busy = any(m.rows.in_flight for m in current.manifests)
            if not current.has_changes and not busy:
                return current
            if current.has_changes:
                try:
                    apply(project, current, backend=backend, allow_cancel=allow_cancel, say=say,
                          work=work)
                except LockError as exc:  # another apply (cron, a colleague) is on it: wait
                    if say:
                        say(LockWait(str(exc)))
                prune = False  # orphans are cancelled once
        waiting.check_timeout(started, timeout, current, backend)
        # Only running jobs to wait for: watch the jobs, not the rows, until one ends — a plan
        # per poll reads every row and competes for the CPU with a local model.
        running = ({j.name for j in backend.list_jobs(in_flight_only=True)}
                   if busy and not current.has_changes else set())
        # Always pause: rows held for quota or an INTERNAL retry delay leave nothing to do now,
        # and planning again at once would spin.
        time.sleep(poll_interval)
        while running and running <= {j.name for j in backend.list_jobs(in_flight_only=True)}:
            waiting.check_timeout(started, timeout, current, backend)
            time.sleep(poll_interval)


def status(project: Project, name: str | None = None, *,
           backend: Backend | None = None) -> list[JobStatus]:
    """The jobs of the project's manifests (or NAME's), newest first per manifest."""
    if name is not None:
        project.manifest(name)
    return observe.status(project.manifests, backend or open_backend(project), name)


def usage(project: Project, name: str | None = None, *,
          backend: Backend | None = None) -> list[Usage]:
    """Tokens and cost actually used, per manifest, from the usage recorded with each answer."""
    return observe.usage([m for m in project.manifests if name is None or m.name == name],
                         backend or open_backend(project), project.settings)


def import_job(project: Project, name: str, job_name: str, *,
               backend: Backend | None = None) -> int:
    """Adopt a job made outside batchrun: its answers for rows of NAME's source count as done.
    Returns the number of answers merged into the destination."""
    return handson.import_job(project.manifest(name), Writer(backend or open_backend(project)),
                              project.settings, job_name)


def results(project: Project, name: str, *, backend: Backend | None = None) -> Iterator[
        dict[str, Any]]:
    """The collected answers of one manifest, one row per id, as stored in its destination, each
    with its `outcome` under the manifest now: succeeded, failed (out of attempts), or stale
    (an older spec's or another answerer's answer)."""
    m = project.manifest(name)
    reader = backend or open_backend(project)
    answerer = reader.answerer(m.model.resource)
    return (result.shown(row, result.state_of(row, m.spec_hash, answerer, m.max_attempts))
            for row in reader.read_destination(m.destination))


def cancel(project: Project, name: str, *, backend: Backend | None = None,
           preview: bool = False) -> CancelReport:
    """Cancel NAME's running jobs, of its current and older specs (what they answered is still
    collected), and with `preview` its running previews too; iterates as the names cancelled."""
    return handson.cancel_running(project.manifest(name),
                                  Writer(backend or open_backend(project)), previews=preview)


def running(project: Project, *, backend: Backend | None = None) -> dict[str, list[str]]:
    """NAME -> its jobs in flight that `batchrun cancel NAME` stops (a preview's are left)."""
    names = {m.name for m in project.manifests}
    out: dict[str, list[str]] = {}
    for job in (backend or open_backend(project)).list_jobs(in_flight_only=True):
        if job.manifest_name in names and not job.preview and job.state.short != "cancelling":
            out.setdefault(job.manifest_name, []).append(job.name)
    return out


def retry(project: Project, name: str, *, failed: bool = False, backend: Backend | None = None,
          say: Listener | None = None, older_specs: bool = False,
          limit: int | None = None) -> RetryReport:
    """After fixing a cause: unblock NAME and, with `failed`, give its failed rows fresh attempts;
    with `older_specs`, mark up to `limit` answers kept from older specs to be re-run. The next
    apply sends them."""
    return handson.retry(project.manifest(name), Writer(backend or open_backend(project)),
                         project.settings, failed=failed, say=say or (lambda _: None),
                         older_specs=older_specs, limit=limit)


def doctor(project: Project, *, backend: Backend | None = None,
           write_probe: bool = False) -> list[Finding]:
    """What a first real run needs, checked: one Finding (ok, what, fix) per thing. Writes nothing
    remote: permissions are asked of the services; `write_probe` (doctor --canary) also writes
    and removes a test object in staging."""
    return doctor_checks.doctor(project.manifests, backend or open_backend(project),
                                project.settings, write_probe=write_probe)


def project_notes(project: Project) -> list[Finding]:
    """What `plan` says once about the project itself: that batchrun.yaml should have an id."""
    found = doctor_checks.id_finding(project.settings)
    return [found] if found is not None and found.warn else []


def canary(project: Project, *, backend: Backend | None = None,
           timeout: float = 3600) -> list[Finding]:
    """doctor --canary: a two-row job per model family and destination kind in use, its raw
    output saved under .batchrun/canary/<date>/ and read back through the parser."""
    folder = project.settings.state_dir / "canary" / datetime.now(UTC).strftime("%Y-%m-%d")
    return handson.canary(project.manifests, Writer(backend or open_backend(project)),
                          project.settings,
                          folder, timeout=timeout)


def gc(project: Project, name: str | None = None, *, dry_run: bool = False,
       backend: Backend | None = None) -> dict[str, list[str]]:
    """Remove (or with dry_run, list) what collected jobs older than `retention` left behind,
    per manifest. Only batchrun's own labelled jobs, staging paths and intermediate tables."""
    writer = Writer(backend or open_backend(project))
    manifests = [project.manifest(name)] if name else list(project.manifests)
    return {m.name: handson.gc(m, writer, project.settings, dry_run=dry_run) for m in manifests}


def unlock(project: Project, name: str, *, backend: Backend | None = None) -> str:
    """Remove the locks of NAME and of its destination left by a dead apply."""
    return Writer(backend or open_backend(project)).break_locks(project.manifest(name))


__all__ = ["ApplyReport", "CancelReport", "JobStatus", "Manifest", "Project", "RenderError", "RetryReport",
           "Review", "Usage", "apply", "apply_reviewed",
           "apply_saved", "cancel", "check_budget", "check_output", "converge", "import_job",
           "load_project",
           "open_backend", "plan", "preview", "render", "report", "results", "retry", "save_plan",
           "status", "unlock", "usage", "write_output"]
