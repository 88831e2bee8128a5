"""The GCP project when batchrun.yaml names none (issue 23), as Google's clients find it:
GOOGLE_CLOUD_PROJECT (or the legacy GCLOUD_PROJECT), then gcloud's configured project, read from
its configuration files (CLOUDSDK_CORE_PROJECT, the active configuration's [core] project)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import api
from runner.project.settings import load_settings
from tests import crashkit
from tests.conftest import ProjectDir
from tests.vertex_env import PROJECT, VertexWorld

VERTEX = "backend: vertex\nregion: us-east5\nstaging: gs://b/staging\n"


def gcloud(folder: Path, configs: dict[str, str], active: str | None = None) -> Path:
    (folder / "configurations").mkdir(parents=True)
    for name, project in configs.items():
        (folder / "configurations" / f"config_{name}").write_text(
            f"[core]\naccount = me@example.com\nproject = {project}\n\n[compute]\nregion = x\n")
    if active is not None:
        (folder / "active_config").write_text(active + "\n")
    return folder


def project_of(p: ProjectDir, environ: dict[str, str], yaml: str = VERTEX) -> tuple[
        str | None, str | None, list[str]]:
    p.write("batchrun.yaml", yaml)
    settings, problems = load_settings(cwd=p.root, environ=environ)
    return settings.project, settings.origins.get("project"), [d.summary for d in problems]


def test_google_cloud_project_is_used_when_batchrun_yaml_names_none(
        project_dir: ProjectDir) -> None:
    assert project_of(project_dir, {"GOOGLE_CLOUD_PROJECT": "p-env"}) == (
        "p-env", "GOOGLE_CLOUD_PROJECT", [])
    assert project_of(project_dir, {"GCLOUD_PROJECT": "p-old"})[:2] == ("p-old", "GCLOUD_PROJECT")
    named = project_of(project_dir, {"GOOGLE_CLOUD_PROJECT": "p-env"}, VERTEX + "project: my-project-1\n")
    assert named[:2] == ("my-project-1", "batchrun.yaml")
    flagged = project_of(project_dir, {"GOOGLE_CLOUD_PROJECT": "p-env",
                                       "BATCHRUN_PROJECT": "p-batchrun"})
    assert flagged[:2] == ("p-batchrun", "BATCHRUN_PROJECT")


def test_gcloud_configured_project_is_read_from_its_files(project_dir: ProjectDir,
                                                          tmp_path: Path) -> None:
    folder = gcloud(tmp_path / "gcloud", {"default": "p-default", "work": "p-work"}, "work")
    environ = {"CLOUDSDK_CONFIG": str(folder)}
    project, origin, problems = project_of(project_dir, environ)
    assert project == "p-work" and origin is not None and "gcloud" in origin and not problems
    assert project_of(project_dir, {**environ, "CLOUDSDK_ACTIVE_CONFIG_NAME": "default"})[0] == (
        "p-default")
    assert project_of(project_dir, {**environ, "CLOUDSDK_CORE_PROJECT": "p-core"})[0] == "p-core"
    assert project_of(project_dir, {**environ, "GOOGLE_CLOUD_PROJECT": "p-env"})[0] == "p-env"
    home = tmp_path / "home"
    gcloud(home / ".config" / "gcloud", {"default": "p-home"})  # no active_config: "default"
    assert project_of(project_dir, {"HOME": str(home)})[0] == "p-home"


def test_no_project_anywhere_says_where_to_set_one(project_dir: ProjectDir,
                                                  tmp_path: Path) -> None:
    project, _, problems = project_of(project_dir, {"CLOUDSDK_CONFIG": str(tmp_path / "none")})
    assert project is None and problems == ["the vertex backend needs project"]


def test_a_local_project_takes_no_gcp_project(project_dir: ProjectDir) -> None:
    assert project_of(project_dir, {"GOOGLE_CLOUD_PROJECT": "p-env"}, "backend: local\n")[0] is None


def test_google_cloud_project_alone_is_enough_for_plan(vertex: VertexWorld,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    settings = (vertex.p.root / "batchrun.yaml").read_text()
    vertex.p.write("batchrun.yaml", settings.replace(f"project: {PROJECT}\n", ""))
    assert "project:" not in (vertex.p.root / "batchrun.yaml").read_text()
    vertex.p.write("rows.jsonl", '{"id": "a1", "text": "hello"}\n')
    vertex.p.write("m.yaml", crashkit.MANIFEST)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    plan = api.plan(vertex.project())
    assert plan.manifest("m").rows.to_do == 1
    assert vertex.project().settings.project == PROJECT
