"""Manifest errors: each class has a golden copy of the message a user reads, with file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import api, display
from runner.errors import ConfigError, ManifestError
from runner.manifest import find_manifest_files, load_manifests
from runner.settings import load_settings
from runner.yamldoc import load_documents
from tests.conftest import ProjectDir

INVALID = Path(__file__).parent / "data" / "invalid"


@pytest.mark.parametrize("name", sorted(p.stem for p in INVALID.glob("*.yaml")))
def test_invalid_manifest_messages(name: str, golden) -> None:  # type: ignore[no-untyped-def]
    settings, _ = load_settings(cwd=INVALID, environ={})
    with pytest.raises(ManifestError) as info:
        load_manifests([INVALID / f"{name}.yaml"], settings)
    text = display.diagnostics_text(info.value.diagnostics).replace(str(INVALID) + "/", "")
    golden(f"invalid/{name}.txt", text)


def test_every_error_of_a_folder_is_reported_in_one_run() -> None:
    settings, _ = load_settings(cwd=INVALID, environ={})
    with pytest.raises(ManifestError) as info:
        load_manifests([INVALID], settings)
    files = {d.file for d in info.value.diagnostics if d.file}
    assert len(files) == len(list(INVALID.glob("*.yaml")))


def test_dates_stay_strings_and_duplicates_are_rejected() -> None:
    docs, problems = load_documents("when: 2024-01-02\nn: 1\n", "x.yaml")
    assert docs[0].data == {"when": "2024-01-02", "n": 1} and not problems
    _, problems = load_documents("a: 1\nb: 2\na: 3\n", "x.yaml")
    assert [(p.summary, p.line) for p in problems] == [('duplicate key "a"', 3)]


def test_names_are_unique_across_files(project_dir: ProjectDir) -> None:
    project_dir.write("copy/triage.yaml", (project_dir.root / "triage.yaml").read_text()
                      .replace("file: tickets.csv", "file: ../tickets.csv")
                      .replace("out/triage.jsonl", "out/other.jsonl"))
    with pytest.raises(ManifestError, match='name "triage" is also used in'):
        api.load_project(cwd=project_dir.root)


def test_shared_destination_is_rejected(project_dir: ProjectDir) -> None:
    project_dir.write("second.yaml", (project_dir.root / "triage.yaml").read_text()
                      .replace("name: triage", "name: second"))
    with pytest.raises(ManifestError, match='destination is also written by "second"'):
        api.load_project(cwd=project_dir.root)


def test_folder_search_skips_other_projects_and_non_manifests(project_dir: ProjectDir) -> None:
    project_dir.write("ci/workflow.yaml", "on: push\njobs: {}\n")
    project_dir.write("sub/batchrun.yaml", "backend: local\n")
    project_dir.write("sub/m.yaml", "apiVersion: batchrun/v1\nkind: BatchJob\n")
    found = find_manifest_files([project_dir.root])
    assert [p.name for p in found] == ["triage.yaml"]


def test_settings_precedence_flag_env_overlay_file(project_dir: ProjectDir) -> None:
    project_dir.write("batchrun.yaml", """\
        region: us-central1
        environments:
          prod: {region: europe-west4, project: prod-project-1}
        """)
    settings, _ = load_settings(cwd=project_dir.root, environ={})
    assert settings.region == "us-central1"
    settings, _ = load_settings(cwd=project_dir.root, environment="prod", environ={})
    assert (settings.region, settings.project) == ("europe-west4", "prod-project-1")
    env = {"BATCHRUN_REGION": "us-east5", "BATCHRUN_ENV": "prod"}
    settings, _ = load_settings(cwd=project_dir.root, environ=env)
    assert settings.region == "us-east5" and settings.origins["region"] == "BATCHRUN_REGION"
    settings, _ = load_settings(cwd=project_dir.root, environ=env, flags={"region": "asia-east1"})
    assert settings.region == "asia-east1" and settings.origins["region"] == "--region"


def test_bad_settings_are_reported(project_dir: ProjectDir, golden) -> None:  # type: ignore[no-untyped-def]
    project_dir.write("batchrun.yaml", "backend: vertex\nregion: Mars-1\nquota: {max_jobs: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=project_dir.root, environ={})
    text = display.diagnostics_text(info.value.diagnostics).replace(str(project_dir.root) + "/", "")
    golden("settings_errors.txt", text)
    project_dir.write("batchrun.yaml", "backend: vertex\nregion: global\n")
    _settings, problems = load_settings(cwd=project_dir.root, environ={})
    golden("settings_semantic_errors.txt",
           display.diagnostics_text(problems).replace(str(project_dir.root) + "/", ""))
    with pytest.raises(ConfigError, match="unknown environment"):
        load_settings(cwd=project_dir.root, environment="nope", environ={})


def test_unknown_model_is_a_warning_not_a_refusal(project_dir: ProjectDir) -> None:
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-3-5-haiku@20241022", "anthropic/claude-fable-9@20300101"))
    project = api.load_project(cwd=project_dir.root)
    (warning,) = project.warnings
    assert warning.severity.value == "warning"
    assert "not in batchrun's list of batch-capable models" in warning.summary
    assert warning.line == 6 and warning.path == "spec.model"


def test_vertex_reserved_columns_are_refused_for_bigquery_sources(project_dir: ProjectDir) -> None:
    project_dir.write("triage.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: triage}
        spec:
          model: anthropic/claude-3-5-haiku@20241022
          parameters: {max_tokens: 5}
          source:
            bigquery: {table: p.d.t}
            id: ticket_id
            columns: [ticket_id, status, body]
          prompt: {user: "{{ body }}"}
          destination: {bigquery: {table: p.d.out}}
        """)
    with pytest.raises(ManifestError) as info:
        api.load_project(cwd=project_dir.root)
    (problem,) = info.value.diagnostics
    assert problem.summary == 'column "status" is reserved by Vertex for claude job output'
    assert problem.path == "spec.source"
