"""Every example in configs/ validates; the local ones run the whole loop on the local backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner import api
from tests.conftest import REPO

CONFIGS = REPO / "configs"


@pytest.mark.parametrize("folder", ["", "vertex"])
def test_examples_validate(folder: str) -> None:
    project = api.load_project(cwd=CONFIGS / folder, environ={})
    assert len(project.manifests) >= 3
    assert not [w for w in project.warnings if w.is_error]


def test_examples_cover_every_family_and_io_kind() -> None:
    local = api.load_project(cwd=CONFIGS, environ={}).manifests
    remote = api.load_project(cwd=CONFIGS / "vertex", environ={}).manifests
    assert {m.family.value for m in local} == {"claude", "openai-chat", "openai-embeddings"}
    assert {m.source.kind.value for m in remote} == {"bigquery", "gcs", "file"}
    assert {m.destination.kind.value for m in remote} == {"bigquery", "gcs"}


def test_local_examples_apply_and_converge(tmp_path: Path) -> None:
    work = tmp_path / "configs"
    shutil.copytree(CONFIGS, work, ignore=shutil.ignore_patterns(".batchrun", "out"))
    project = api.load_project(cwd=work, environ={})
    final = api.converge(project, poll_interval=0.1, timeout=120)
    for m in final.manifests:
        assert (m.rows.done, m.rows.to_do, m.rows.failed) == (m.rows.total, 0, 0), m.name
    assert not api.plan(api.load_project(cwd=work, environ={})).has_changes
