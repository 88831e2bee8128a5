"""Saved plans: writes and reads `plan --out FILE`, validated by schemas/plan.v1.json both ways, and
says exactly why a saved plan no longer matches the world. Holds no rows: sources may be huge."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from runner.errors import Diagnostic, PlanFileError, error
from runner.planning.plan import FORMAT_VERSION, Plan
from runner.project import schemas
from runner.project.settings import find_config
from runner.spec import Settings

STALE_HINT = "run `batchrun plan --out FILE` again and apply the new plan"


def _check(data: Any, file: str) -> None:
    if not isinstance(data, dict):
        raise PlanFileError([error("not a batchrun plan file", file=file)])
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise PlanFileError([error(f"plan format {version} was made by a newer batchrun; this one "
                                   f"reads format {FORMAT_VERSION}", file=file,
                                   hint="upgrade batchrun, or make the plan with this version")])
    problems = [error(f"invalid plan file: {e.message}", file=file,
                      path=".".join(str(p) for p in e.absolute_path) or None)
                for e in jsonschema.Draft202012Validator(
                    schemas.load_schema("plan.v1")).iter_errors(data)]
    if problems:
        raise PlanFileError(problems[:10])


def to_document(plan: Plan, settings: Settings, version: str) -> dict[str, Any]:
    doc = plan.to_dict()
    doc.update(batchrun_version=version, created_at=datetime.now(UTC).isoformat(),
               settings={"backend": settings.backend, "project": settings.project,
                         "region": settings.region, "environment": settings.environment},
               # where the plan was made, so `apply FILE` works from any folder
               project={"root": str(settings.root),
                        "config": str(settings.config_file) if settings.config_file else None})
    return doc


def recorded_config(doc: dict[str, Any], path: Path) -> Path | None:
    """The batchrun.yaml the plan was made with, if it is still there; else the one above the
    plan file, for a plan carried to another checkout of the same repository."""
    recorded = (doc.get("project") or {}).get("config")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    return find_config(path.resolve().parent)


def dumps(path: Path, plan: Plan, settings: Settings, version: str) -> str:
    """The text of a saved plan, checked against its schema (the caller writes it, atomically)."""
    doc = to_document(plan, settings, version)
    _check(doc, str(path))
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def read(path: Path) -> tuple[Plan, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanFileError([error(f"cannot read plan file: {exc}", file=str(path))]) from exc
    _check(data, str(path))
    return Plan.from_dict(data), data


def is_plan_file(path: Path) -> bool:
    if not path.is_file() or path.suffix.lower() in (".yaml", ".yml"):
        return False
    with path.open("rb") as fh:
        return fh.read(64).lstrip().startswith(b"{")


def stale_reasons(saved: Plan, fresh: Plan, saved_settings: dict[str, Any],
                  settings: Settings) -> list[Diagnostic]:
    """Everything that differs between the world the saved plan saw and the world now."""
    out = []
    now = {"backend": settings.backend, "project": settings.project, "region": settings.region,
           "environment": settings.environment}
    for key, value in now.items():
        if saved_settings.get(key) != value:
            out.append(error(f"{key} is {value!r} now, {saved_settings.get(key)!r} in the plan",
                             hint=STALE_HINT))
    before = {m.name: m for m in saved.manifests}
    after = {m.name: m for m in fresh.manifests}
    for name in sorted(before.keys() - after.keys()):
        out.append(error(f'manifest "{name}" is gone', hint=STALE_HINT))
    for name in sorted(after.keys() - before.keys()):
        out.append(error(f'manifest "{name}" is new since the plan', hint=STALE_HINT))
    for name in sorted(before.keys() & after.keys()):
        b, a = before[name], after[name]
        if b.manifest_digest != a.manifest_digest:
            out.append(error(f'manifest "{name}" changed ({a.file})', hint=STALE_HINT))
        elif b.source_digest != a.source_digest:
            out.append(error(f'the source rows of "{name}" changed', hint=STALE_HINT))
    if saved.observed_digest != fresh.observed_digest:
        out.append(error("the remote jobs changed since the plan (a job was created, finished or "
                         "cancelled)", hint=STALE_HINT))
    return out

