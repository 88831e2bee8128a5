"""Issue 24, conventions users bring from Terraform and dbt: the executor's test record only when a
test asks, gc naming each item once, budget amounts with their significant digits, --target globs
and --select label:KEY=VALUE, `show PLANFILE`, versioned --json on status and results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import api, handson
from runner.backends.base import JobState
from tests.conftest import TRIAGE, ProjectDir
from tests.fakes import FakeBackend


def load(p: ProjectDir) -> api.Project:
    return api.load_project(cwd=p.root)


def test_the_executor_record_is_written_only_when_a_test_asks(
        project_dir: ProjectDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's project never grows .batchrun/sent.jsonl: it is the tests' count of what the
    local executor sent, kept only under BATCHRUN_RECORD_SENT=1 (tests/conftest.py sets it)."""
    monkeypatch.delenv("BATCHRUN_RECORD_SENT", raising=False)
    final = api.converge(load(project_dir), poll_interval=0.05, timeout=60)
    assert sum(m.rows.done for m in final.manifests) == 5
    assert not (project_dir.root / ".batchrun" / "sent.jsonl").exists()
    monkeypatch.setenv("BATCHRUN_RECORD_SENT", "1")
    (project_dir.root / "tickets.csv").open("a").write("T6,New,Body\n")
    api.converge(load(project_dir), poll_interval=0.05, timeout=60)
    sent = (project_dir.root / ".batchrun" / "sent.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in sent] == ["T6"]
