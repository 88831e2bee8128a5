"""Manifest errors: each class has a golden copy of the message a user reads, with file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import api
from runner.errors import ConfigError, ManifestError
from runner.project.manifest import find_manifest_files, load_manifests
from runner.project.settings import load_settings
from runner.project.yamldoc import load_documents
from runner.views import text as display
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
    # `global` runs Gemini's batch jobs: refused per manifest of another family (test_gemini.py)
    project_dir.write("batchrun.yaml", "backend: vertex\nregion: global\n")
    _settings, problems = load_settings(cwd=project_dir.root, environ={})
    golden("settings_semantic_errors.txt",
           display.diagnostics_text(problems).replace(str(project_dir.root) + "/", ""))
    with pytest.raises(ConfigError, match="unknown environment"):
        load_settings(cwd=project_dir.root, environment="nope", environ={})


def test_unknown_model_is_a_warning_not_a_refusal(project_dir: ProjectDir) -> None:
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-haiku-4-5@20251001", "anthropic/claude-fable-9@20300101"))
    project = api.load_project(cwd=project_dir.root)
    (warning,) = project.warnings
    assert warning.severity.value == "warning"
    assert "not in batchrun's list of batch-capable models" in warning.summary
    assert warning.line == 6 and warning.path == "spec.model"


def test_columns_named_id_or_status_are_fine_in_a_bigquery_source(project_dir: ProjectDir) -> None:
    project_dir.write("triage.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: triage}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {max_tokens: 5}
          source:
            bigquery: {table: p.d.t}
            id: ticket_id
            columns: [ticket_id, id, status, body]
          prompt: {user: "{{ body }}"}
          destination: {bigquery: {table: p.d.out}}
        """)
    # batchrun stages its own input table (custom_id + request), so the source's column names
    # never meet the columns Vertex adds to a job's output (issue 14: a false positive before).
    project = api.load_project(cwd=project_dir.root)
    assert project.manifest("triage").source.columns == ("ticket_id", "id", "status", "body")


# --- issue 14: custom_id under the strictest documented rule ---------------------------------------

def test_an_id_a_batch_job_may_refuse_is_named_with_a_hint(project_dir: ProjectDir) -> None:
    (project_dir.root / "tickets.csv").write_text(
        "ticket_id,subject,body\nT1,a,b\nsupport/42 é,c,d\nT3,e,f\n")
    with pytest.raises(api.BatchrunError) as info:
        list(api.render(api.load_project(cwd=project_dir.root), "triage"))
    (problem,) = info.value.diagnostics
    assert "row 2 (id 'support/42 é')" in problem.summary or "support/42 é" in problem.summary
    assert "letters, digits, _ and - only" in problem.summary
    assert "id: {column: ticket_id, hash: true}" in problem.summary


def test_a_hashed_id_is_sent_and_the_real_id_kept_in_the_results(project_dir: ProjectDir) -> None:
    import json

    from tests.fakes import FakeBackend

    (project_dir.root / "tickets.csv").write_text(
        "ticket_id,subject,body\nT1,a,b\nsupport/42 é,c,d\n")
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "id: ticket_id}", "id: {column: ticket_id, hash: true}}"))
    project = api.load_project(cwd=project_dir.root)
    lines = [json.loads(line) for line in api.render(project, "triage")]
    # Only the id that does not fit is hashed: T1 keeps its id (and any answer it has).
    assert lines[0]["custom_id"] == "T1"
    assert len(lines[1]["custom_id"]) == 41 and lines[1]["custom_id"].startswith("h")
    fake = FakeBackend()
    api.apply(project, backend=fake)
    fake.run_all()
    api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    rows = fake.destinations[str(project_dir.root / "out/triage.jsonl")]
    assert sorted(r["ticket_id"] for r in rows) == ["T1", "support/42 é"]


# --- issue 14: the catalogue's lifecycle and unknown models ------------------------------------

def test_a_retired_model_warns_naming_the_retirement_and_the_replacement(
        project_dir: ProjectDir) -> None:
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-haiku-4-5@20251001", "anthropic/claude-3-5-haiku@20241022"))
    (warning,) = api.load_project(cwd=project_dir.root).warnings
    assert warning.summary == ('model "anthropic/claude-3-5-haiku@20241022" was retired on '
                               "2026-07-05: Vertex refuses new jobs for it")
    assert warning.hint == 'move to "anthropic/claude-haiku-5-5"'


def test_an_unknown_model_runs_and_its_budget_refusal_says_how_to_price_it(
        project_dir: ProjectDir) -> None:
    from tests.fakes import FakeBackend

    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "anthropic/claude-haiku-4-5@20251001", "anthropic/claude-fable-9@20300101").replace(
        "max_attempts: 2", "max_attempts: 2\n  max_cost: 5"))
    project = api.load_project(cwd=project_dir.root)
    assert "not in batchrun's list" in project.warnings[0].summary
    with pytest.raises(api.BatchrunError) as info:
        api.apply(project, backend=FakeBackend())
    (problem,) = info.value.diagnostics
    assert "no price is known for this model" in problem.summary
    assert problem.hint is not None and "pricing: {publisher/model:" in problem.hint
    priced = project_dir.root / "batchrun.yaml"
    priced.write_text(priced.read_text() + "pricing: {anthropic/claude-fable-9: {input: 1, output: 5}}\n")
    report = api.apply(api.load_project(cwd=project_dir.root), backend=FakeBackend())
    assert report.rows_sent == 5


def test_adding_hash_true_after_answers_sends_only_the_new_bad_row(project_dir: ProjectDir) -> None:
    """Red team: following the hint re-keyed every row, so every answered row was paid again."""
    from tests.fakes import FakeBackend

    fake = FakeBackend()
    project = api.load_project(cwd=project_dir.root)
    api.apply(project, backend=fake)
    fake.run_all()
    api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    with (project_dir.root / "tickets.csv").open("a") as fh:
        fh.write("support/42 é,c,d\n")
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace(
        "id: ticket_id}", "id: {column: ticket_id, hash: true}}"))
    plan = api.plan(api.load_project(cwd=project_dir.root), backend=fake)
    rows = plan.manifest("triage").rows
    # The answered rows are reshaped for free to carry the raw id column `hash: true` keeps.
    assert (rows.done, rows.to_do, rows.reshape) == (0, 1, 5)
    api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    fake.run_all()
    assert fake.sent["triage", "T1"] == 1 and sum(fake.sent.values()) == 6


def test_the_validation_cache_never_hides_an_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A document the schema passed is not validated again (start-up); an edited document, or
    the same one under another schema, is."""
    from runner.project import schemas

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    schemas._known_valid.cache_clear()
    good = tmp_path / "m.yaml"
    good.write_text("apiVersion: batchrun/v1\nkind: BatchJob\nmetadata: {name: a}\nspec:\n"
                    "  model: anthropic/claude-haiku-4-5@20251001\n"
                    "  source: {file: rows.jsonl}\n  prompt: {user: hi}\n"
                    "  destination: {file: out.jsonl}\n")
    (doc,), _ = load_documents(good.read_text(), str(good))
    assert schemas.validate(doc, "manifest.v1") == []
    remembered = (tmp_path / "cache" / "batchrun" / "valid-documents").read_text().split()
    assert len(remembered) == 1
    schemas._known_valid.cache_clear()  # a new process
    assert schemas.validate(doc, "manifest.v1") == []
    good.write_text(good.read_text().replace("prompt:", "promt:"))
    (bad,), _ = load_documents(good.read_text(), str(good))
    assert [d.summary for d in schemas.validate(bad, "manifest.v1")][:1]
    assert schemas._digest(doc, "manifest.v1") != schemas._digest(doc, "project.v1")
    schemas._known_valid.cache_clear()
