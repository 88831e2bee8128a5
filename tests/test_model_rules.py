"""Issue 23, item 1: per-model request rules. A parameter a model refuses is a located validate
error with its fix; a default the model refuses is dropped for it with a warning, never sent; init
writes only what the chosen model accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import api
from runner.errors import ManifestError
from tests.conftest import TRIAGE, ProjectDir


def _use(project_dir: ProjectDir, model: str, parameters: str) -> None:
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(TRIAGE.replace(
        "anthropic/claude-haiku-4-5@20251001", model).replace(
        "parameters: {max_tokens: 64}", f"parameters: {parameters}"))


def _errors(project_dir: ProjectDir) -> list:  # type: ignore[type-arg]
    with pytest.raises(ManifestError) as info:
        api.load_project(cwd=project_dir.root)
    return [d for d in info.value.diagnostics if d.is_error]


def test_temperature_on_a_model_that_refuses_it_is_a_located_error(
        project_dir: ProjectDir) -> None:
    _use(project_dir, "anthropic/claude-opus-4-7", "{max_tokens: 64, temperature: 0}")
    (problem,) = _errors(project_dir)
    assert problem.summary == "claude-opus-4-7 takes no temperature: remove it"
    assert problem.file is not None and problem.file.endswith("triage.yaml")
    assert (problem.line, problem.path) == (7, "spec.parameters.temperature")
    assert problem.hint is not None and "sampling" in problem.hint


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-5", "anthropic/claude-haiku-5-5",
                                   "anthropic/claude-fable-5-1", "anthropic/claude-opus-5"])
def test_every_newer_claude_refuses_top_p_and_top_k(project_dir: ProjectDir, model: str) -> None:
    _use(project_dir, model, "{max_tokens: 64, top_p: 0.9, top_k: 5}")
    found = {p.path for p in _errors(project_dir)}
    assert found == {"spec.parameters.top_p", "spec.parameters.top_k"}


def test_older_claude_takes_temperature_or_top_p_not_both(project_dir: ProjectDir) -> None:
    _use(project_dir, "anthropic/claude-haiku-4-5@20251001",
         "{max_tokens: 64, temperature: 0, top_p: 0.9}")
    (problem,) = _errors(project_dir)
    assert problem.summary == ("claude-haiku-4-5 takes temperature or top_p, not both: "
                               "remove one")
    assert problem.path == "spec.parameters.top_p"
    _use(project_dir, "anthropic/claude-haiku-4-5@20251001", "{max_tokens: 64, temperature: 0}")
    assert api.load_project(cwd=project_dir.root).manifests


def test_forced_tool_use_is_refused_where_the_model_refuses_it(project_dir: ProjectDir) -> None:
    _use(project_dir, "anthropic/claude-sonnet-5-5",
         "{max_tokens: 64, tools: [], tool_choice: {type: any}}")
    (problem,) = _errors(project_dir)
    assert problem.path == "spec.parameters.tool_choice"
    assert 'tool_choice type "any"' in problem.summary
    _use(project_dir, "anthropic/claude-sonnet-5",
         "{max_tokens: 64, tools: [], tool_choice: {type: any}}")
    assert api.load_project(cwd=project_dir.root).manifests


def test_a_default_the_model_refuses_is_dropped_for_it_with_a_warning(
        project_dir: ProjectDir) -> None:
    settings = project_dir.root / "batchrun.yaml"
    settings.write_text(settings.read_text() + "defaults:\n  parameters: {temperature: 0}\n")
    kept = api.load_project(cwd=project_dir.root)
    assert kept.manifests[0].parameters["temperature"] == 0  # haiku 4.5 takes it
    assert not kept.warnings
    _use(project_dir, "anthropic/claude-opus-4-7", "{max_tokens: 64}")
    project = api.load_project(cwd=project_dir.root)
    assert "temperature" not in project.manifests[0].parameters
    (warning,) = [w for w in project.warnings if "temperature" in w.summary]
    assert warning.summary == ("defaults.parameters.temperature is not sent to "
                               "claude-opus-4-7 (manifest triage): the model takes no "
                               "temperature")
    assert warning.file is not None and warning.file.endswith("batchrun.yaml")
    assert (warning.line, warning.path) == (4, "defaults.parameters.temperature")


def test_init_writes_only_what_the_chosen_model_accepts(tmp_path: Path) -> None:
    from runner.project import scaffold

    default = tmp_path / "default"
    scaffold.init(default)
    text = (default / "manifests" / "review-sentiment.yaml").read_text()
    assert "temperature: 0" in text
    assert not [w for w in api.load_project(cwd=default, environ={}).warnings if w.is_error]
    opus = tmp_path / "opus"
    scaffold.init(opus, model="anthropic/claude-opus-4-7")
    text = (opus / "manifests" / "review-sentiment.yaml").read_text()
    assert "model: anthropic/claude-opus-4-7" in text
    assert "temperature" not in text
    assert "region: us " in (opus / "batchrun.yaml").read_text()
    project = api.load_project(cwd=opus, environ={})
    assert "temperature" not in project.manifests[0].parameters


def test_init_refuses_a_model_it_does_not_know(tmp_path: Path) -> None:
    from runner.errors import ConfigError
    from runner.project import scaffold

    with pytest.raises(ConfigError) as info:
        scaffold.init(tmp_path / "x", model="anthropic/claude-nope-1")
    assert "batchrun models" in (info.value.diagnostics[0].hint or "")
    assert not (tmp_path / "x").exists()
