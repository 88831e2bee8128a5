"""Issue 22, item 4: a file a flag asks for (report -o, plan --out, preview --html) never replaces a
file of the project — a destination (its answers were paid for), its sidecar, a source, a manifest,
a template, batchrun.yaml, anything under .batchrun/ — however the path is spelt; and is written
whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ProjectDir

TEMPLATED = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: other}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 64}
  source: {file: tickets.csv, id: ticket_id}
  prompt: {user: {file: prompts/other.j2}}
  destination: {file: out/other.jsonl}
"""

# (flag as typed, the path given, what the error says it is)
CASES = [
    ("report", "out/triage.jsonl", 'the destination of "triage" (triage.yaml)'),
    ("plan", "out/triage.jsonl", 'the destination of "triage" (triage.yaml)'),
    ("report", "out/.triage.jsonl.batchrun.json", 'the record of the jobs collected into the destination of "triage"'),
    ("report", "out/other.jsonl", 'the destination of "other" (other.yaml)'),
    ("report", "tickets.csv", 'the source file of "other" (other.yaml)'),  # of both, in fact
    ("plan", "triage.yaml", "a manifest file"),
    ("report", "prompts/other.j2", 'a template file of "other"'),
    ("report", "batchrun.yaml", "a project's settings file (batchrun.yaml)"),
    ("plan", "batchrun.yaml", "a project's settings file (batchrun.yaml)"),
    ("report", ".batchrun/x.html", "inside .batchrun/, batchrun's own state"),
    ("report", "sub/../out/triage.jsonl", 'the destination of "triage"'),
    ("report", "link.html", 'the destination of "triage"'),  # a symlink to it
]


@pytest.fixture
def answered(run, project_dir: ProjectDir) -> ProjectDir:  # type: ignore[no-untyped-def]
    """triage answered; a second manifest with a template file, not yet applied; a symlink to
    triage's destination and a folder to go through."""
    project_dir.write("other.yaml", TEMPLATED)
    project_dir.write("prompts/other.j2", "{{ subject }}")
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    root = project_dir.root
    (root / "sub").mkdir()
    (root / "link.html").symlink_to(root / "out" / "triage.jsonl")
    return project_dir


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _command(flag: str, path: str) -> list[str]:
    return ["report", "triage", "-o", path] if flag == "report" else ["plan", "--out", path]


@pytest.mark.parametrize(("flag", "path", "what"), CASES)
def test_an_output_flag_never_replaces_a_project_file(run, answered: ProjectDir, flag: str,
                                                      path: str, what: str) -> None:  # type: ignore[no-untyped-def]
    root = answered.root
    before = _snapshot(root)
    out = run(*_command(flag, path), code=1)
    typed = "report -o" if flag == "report" else "plan --out"
    assert f"Error: {typed} {path}: refusing to write there: it is {what}" in out, out
    assert "Traceback" not in out and "unexpected" not in out
    assert _snapshot(root) == before  # nothing written, nothing replaced, no temp file left
    assert "3 rows" not in run("plan")  # the answers are still there: nothing to do
    assert "Nothing to do" in run("apply", "--auto-approve")


def test_the_refusals_read_as_golden(run, answered: ProjectDir, golden) -> None:  # type: ignore[no-untyped-def]
    shown = "".join(run(*_command(flag, path), code=1) for flag, path, _ in CASES)
    golden("outputs/refused.txt", shown)


def test_a_destination_of_a_manifest_not_loaded_is_refused_too(run, answered: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """`plan triage.yaml --out` loads one manifest; other.yaml's destination is still the project's."""
    out = run("plan", "triage.yaml", "--out", "out/other.jsonl", code=1)
    assert 'it is the destination of "other" (other.yaml)' in out


def test_preview_html_is_refused_before_the_preview_is_paid_for(run, answered: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    root = answered.root
    sent = (root / ".batchrun" / "sent.jsonl").read_text()
    answered.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        '"{{ subject }}: {{ body }}"', '"{{ body }}"'))
    before = (root / "out" / "triage.jsonl").read_bytes()
    out = run("preview", "triage", "-n", "2", "--html", "out/triage.jsonl", code=1)
    assert 'Error: preview --html out/triage.jsonl: refusing to write there: it is the destination' in out
    assert (root / "out" / "triage.jsonl").read_bytes() == before
    assert (root / ".batchrun" / "sent.jsonl").read_text() == sent  # no row was sent


def test_plan_out_is_refused_before_the_preview_is_paid_for(run, answered: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    root = answered.root
    sent = (root / ".batchrun" / "sent.jsonl").read_text()
    answered.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        '"{{ subject }}: {{ body }}"', '"{{ body }}"'))
    run("plan", "--preview", "2", "--out", "batchrun.yaml", code=1)
    assert (root / ".batchrun" / "sent.jsonl").read_text() == sent


def test_an_output_of_its_own_is_written_whole(run, answered: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    root = answered.root
    (root / "reports").mkdir()
    (root / "reports" / "old.html").write_text("yesterday's report")
    (root / "reports" / "old.html").chmod(0o640)
    assert "Wrote reports/old.html" in run("report", "triage", "-o", "reports/old.html")
    assert "<html" in (root / "reports" / "old.html").read_text()
    assert (root / "reports" / "old.html").stat().st_mode & 0o777 == 0o640
    run("plan", "--out", "reports/plan.json")
    assert json.loads((root / "reports" / "plan.json").read_text())["format_version"]
    assert sorted(p.name for p in (root / "reports").iterdir()) == ["old.html", "plan.json"]


def test_an_output_into_a_missing_folder_says_so(run, answered: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    out = run("report", "triage", "-o", "nowhere/r.html", code=1)
    assert "Error: report -o nowhere/r.html: cannot write there: the folder nowhere does not exist" in out
