"""The public API is pinned: notebooks and schedulers import these names."""

from __future__ import annotations

import zipfile
from pathlib import Path

import runner
from runner.project import schemas
from tests.conftest import REPO


def test_public_names_are_pinned() -> None:
    assert runner.__all__ == [
        "ApplyReport", "BatchrunError", "JobStatus", "Plan", "Project", "Usage", "__version__",
        "apply", "apply_saved", "cancel", "converge", "import_job", "load_project", "plan", "render",
        "results", "retry", "save_plan", "status", "unlock", "usage",
    ]


def test_schemas_found_in_checkout() -> None:
    assert schemas.schema_path("manifest.v1") == REPO / "schemas" / "manifest.v1.json"
    assert schemas.load_schema("project.v1")["title"].startswith("batchrun project settings")


def test_schemas_ship_inside_the_wheel(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    wheel = next(iter(WheelBuilder(str(REPO)).build(directory=str(tmp_path), versions=["standard"])))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"runner/schemas/manifest.v1.json", "runner/schemas/project.v1.json",
            "runner/data/models.json"} <= set(names)


def test_local_backend_does_not_import_google() -> None:
    import subprocess
    import sys

    # Bare `google` / `google.cloud` namespace packages come from site-packages .pth files.
    code = ("import sys, runner.cli, runner.backends.local.backend; "
            "print([m for m in sys.modules if m.startswith('google') "
            "and m not in ('google', 'google.cloud')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_backend_registry_is_the_one_list_of_backends() -> None:
    from runner.backends import REGISTRY
    from runner.cli import commands as cli

    schema = schemas.load_schema("project.v1")
    assert schema["properties"]["backend"]["enum"] == list(REGISTRY)
    env_schema = schema["properties"]["environments"]["additionalProperties"]["properties"]
    assert env_schema["backend"]["enum"] == list(REGISTRY)
    backend_option = next(p for p in cli.main.params if p.name == "backend")
    assert list(backend_option.type.choices) == list(REGISTRY)  # type: ignore[attr-defined]


def test_the_result_row_has_one_owner() -> None:
    """Issue 13: the fields of a result row are spelled once (runner/result.py); collect, checks
    and each destination writer take them from there."""
    from runner.answers import collect, result
    from runner.backends.stores import bq
    from runner.backends.stores import files as localfiles
    from runner.project import checks

    row = result.make(custom_id="x", passthrough={"subject": "s"}, ok=True, output="a",
                      error=None, usage={"input_tokens": 1}, model="m", spec_hash="S",
                      request_hash="R", job="j", finished_at="t")
    assert list(row) == ["custom_id", "subject", *result.FIELDS]
    assert localfiles.CSV_FIELDS is result.FIELDS and checks.RESULT_FIELDS is result.RESERVED
    assert set(bq.BIGQUERY_TYPES) == result.ALL_FIELDS
    assert collect.SUCCEEDED == result.Status.SUCCEEDED
