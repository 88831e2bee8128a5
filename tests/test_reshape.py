"""Issue 16 (first part): a change of how answers are shaped — the response block — re-derives
every result row from the stored answer: no model call, no cost, no row lost."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ProjectDir


def _sent(root: Path) -> int:
    """Rows the local executor was handed, ever (its own record)."""
    log = root / ".batchrun" / "sent.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _results(root: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (root / "out" / "triage.jsonl").read_text().splitlines()]


def test_a_response_change_reshapes_every_row_and_sends_none(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    manifest = project_dir.root / "triage.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("max_attempts: 2", "max_attempts: 2\n  response: {format: json}"))
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
    assert _sent(project_dir.root) == 5
    answers = _results(project_dir.root)
    assert all(isinstance(r["output"], dict) and isinstance(r["raw"], str) for r in answers)

    manifest.write_text(text)  # the response block removed: answers are plain text again
    shown = run("plan")
    assert "~ triage  reshape 5 rows from their stored answers, $0" in shown
    assert "0 rows to send" in shown
    out = run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
    assert "reshaped 5 rows from their stored answers, nothing sent" in out
    assert _sent(project_dir.root) == 5  # the executor was not called again
    texts = _results(project_dir.root)
    assert sorted(r["custom_id"] for r in texts) == ["T1", "T2", "T3", "T4", "T5"]
    assert all(r["output"] == a["raw"] and r["status"] == "succeeded"
               for r, a in zip(sorted(texts, key=lambda r: str(r["custom_id"])),
                               sorted(answers, key=lambda r: str(r["custom_id"])), strict=True))
    assert "up to date" in run("plan")

    manifest.write_text(text.replace("max_attempts: 2", "max_attempts: 2\n  response: {format: json}"))
    assert "reshape 5 rows" in run("plan")  # and back, from the stored text, still unpaid
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
    assert _sent(project_dir.root) == 5
    assert [r["output"] for r in _results(project_dir.root)] == [a["output"] for a in answers]


def test_an_answer_the_new_schema_refuses_is_sent_again_not_lost(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    manifest = project_dir.root / "triage.yaml"
    text = manifest.read_text()
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")  # plain text answers
    assert _sent(project_dir.root) == 5
    manifest.write_text(text.replace("max_attempts: 2", "max_attempts: 2\n  response: {format: json}"))
    # The stored texts are not JSON: reshaping refuses them, keeps them, and the next apply asks
    # the model under the new rules (one attempt used by the stored answer).
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")
    assert _sent(project_dir.root) == 10
    final = _results(project_dir.root)
    assert len(final) == 5 and all(isinstance(r["output"], dict) for r in final)
