"""The CLI end to end on the local backend: golden views, the --json contract and the exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from runner.cli import errors as cli_errors
from tests.conftest import ProjectDir


def test_validate_ok_and_invalid(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    assert run("validate") == "1 manifest valid: triage\n"
    project_dir.write("bad.yaml", "apiVersion: batchrun/v1\nkind: BatchJob\nmetadata: {name: b}\n")
    out = run("validate", code=1)
    assert 'Error: missing required field "spec"\n  in bad.yaml, line 1' in out


def test_plan_views_and_exit_codes(run, golden) -> None:  # type: ignore[no-untyped-def]
    golden("plan_create.txt", run("plan"))
    run("plan", "--detailed-exitcode", code=cli_errors.EXIT_CHANGES)
    doc = json.loads(run("plan", "--json"))
    assert doc["format_version"] == 1 and doc["has_changes"] is True
    (m,) = doc["manifests"]
    assert set(m) >= {"name", "spec_hash", "actions", "rows"}
    assert m["actions"] == ["create"]
    assert m["rows"] == {"total": 5, "done": 0, "in_flight": 0, "to_do": 5, "failed": 0,
                         "waiting": 0, "reshape": 0, "kept": 0}


def test_apply_needs_approval_when_not_a_terminal(run) -> None:  # type: ignore[no-untyped-def]
    out = run("apply", code=1)
    assert "stdin is not a terminal, so nobody can approve; pass --auto-approve" in out
    assert "Nothing" not in out


def test_full_loop_then_nothing_to_do(run, golden, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    out = run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1", "--timeout", "60")
    assert "Done: 5 rows answered." in out
    golden("plan_noop.txt", run("plan"))
    run("plan", "--detailed-exitcode")
    status = run("status")
    assert "triage" in status and "succeeded" in status and "5 ok / 0 failed" in status
    lines = [json.loads(line) for line in run("results", "triage", "--format", "jsonl").splitlines()]
    assert [r["custom_id"] for r in lines] == ["T1", "T2", "T3", "T4", "T5"]
    assert all({"custom_id", "status", "output", "error"} <= set(r) for r in lines)
    assert lines[0]["output"] == "Charged twice: My card was charged twice."
    csv_out = run("results", "triage", "--format", "csv")
    assert csv_out.splitlines()[0].startswith("custom_id,subject,status,output")
    assert "5 rows, 0 failed" in run("results", "triage")
    sent = (project_dir.root / ".batchrun" / "sent.jsonl").read_text().splitlines()
    assert len(sent) == 5  # the executor's own record: each row sent once


def test_errors_are_messages_not_tracebacks(run, project_dir: ProjectDir, golden) -> None:  # type: ignore[no-untyped-def]
    (project_dir.root / "tickets.csv").write_text("ticket_id,subject,body\nT1,a,b\nT1,c,d\n")
    out = run("plan", code=1)
    assert "Traceback" not in out
    golden("plan_row_error.txt", out)
    assert "no manifest named" in run("results", "triag", code=1)


def test_unlock_refuses_while_the_owner_lives(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    from runner import api

    project = api.load_project(cwd=project_dir.root)
    backend = api.open_backend(project)
    with backend.lock("triage"):
        out = run("unlock", "triage", code=1)
        assert f"locked by pid {os.getpid()}" in out and "refusing to unlock" in out
        assert "is being applied by pid" in run("apply", "--auto-approve", code=1)
    assert "was not locked" in run("unlock", "triage")


def test_render_prints_exact_rows(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    out = run("render", "triage", "--limit", "1")
    assert out.startswith('{"custom_id": "T1", "request": {"messages": [{"role": "user", '
                          '"content": "Charged twice: My card was charged twice."}]')
    assert run("render", str(Path(project_dir.root / "triage.yaml"))).count("\n") == 5


def test_the_plan_format_choices_are_the_views() -> None:
    """The CLI spells the choices so --help need not import the plan; they are planview's."""
    from runner.cli import commands as cli
    from runner.views import plan as planview

    assert sorted(cli.PLAN_FORMATS) == sorted(planview.VIEWS)


def test_help_loads_neither_the_api_nor_jinja_nor_jsonschema() -> None:
    """Issue 15: start-up. What `batchrun --help` imports, checked in a fresh interpreter."""
    import subprocess
    import sys

    code = ("import sys, runner.cli; heavy = [m for m in ('runner.api', 'jinja2', 'jsonschema', "
            "'rich', 'runner.applying.executor', 'google.cloud.bigquery', 'google.cloud.storage') if m in sys.modules and "
            "type(sys.modules[m]).__name__ == 'module']; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
