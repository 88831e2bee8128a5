"""Issue 24, conventions users bring from Terraform and dbt: the executor's test record only when a
test asks, gc naming each item once, budget amounts with their significant digits, --target globs
and --select label:KEY=VALUE, `show PLANFILE`, versioned --json on status and results."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from runner import api
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


def test_budget_amounts_keep_their_significant_digits_everywhere(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """The plan said $0.00081 but its error said "estimated $0.00 is more than max_cost $0.00"."""
    from runner.cli import errors as cli_errors

    f = project_dir.root / "triage.yaml"
    f.write_text(f.read_text().replace("max_attempts: 2", "max_attempts: 2\n  max_cost: 0.0001"))
    out = run("plan", code=cli_errors.EXIT_BUDGET)
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert errors and all("$0.00 " not in line and "$0.00\n" not in line for line in errors), out
    assert "$0.00 " not in out
    project_dir.write("batchrun.yaml", "max_cost: 0.00001\n")
    f.write_text(f.read_text().replace("max_cost: 0.0001", "max_cost: 5"))
    out = run("plan", code=cli_errors.EXIT_BUDGET)
    assert "more than max_cost $0.000010" in out and "$0.00 " not in out, out


def test_two_amounts_said_side_by_side_differ_where_they_differ() -> None:
    from runner.errors import usd, usd_apart

    assert usd(0.00001) == "$0.000010" and usd(1234.5) == "$1,234.50" and usd(0) == "$0.00"
    assert usd(0.5) == "$0.50" and usd(0.0123) == "$0.012"
    assert usd_apart(0.0123, 0.0121) == ("$0.0123", "$0.0121")
    assert usd_apart(1.004, 1.003) == ("$1.004", "$1.003")
    assert usd_apart(2.5, 1.0) == ("$2.50", "$1.00")


def test_gc_names_each_item_once(project_dir: ProjectDir) -> None:
    """Three jobs of the same rows (two ended at job level, set aside by retry, then one that
    answered) share one staged input: a dry run named it three times."""
    fake = FakeBackend()
    project_dir.write("batchrun.yaml", "retention: 30000\nquota: {failure_backoff: 0}\n")
    for _ in range(2):
        api.apply(load(project_dir), backend=fake)
        (job,) = [j for j in fake.jobs.values() if j.state.in_flight]
        fake.end(job.name, JobState.FAILED, code=14, message="503 Service Unavailable")
    api.retry(load(project_dir), "triage", backend=fake)
    api.apply(load(project_dir), backend=fake)
    fake.run_all()
    api.apply(load(project_dir), backend=fake)
    assert len({j.input_digest for j in fake.jobs.values()}) == 1 and len(fake.jobs) == 3
    project_dir.write("batchrun.yaml", "retention: 0\n")
    project = load(project_dir)
    listed = api.gc(project, dry_run=True, backend=fake)["triage"]
    assert len(listed) == len(set(listed)) == 4, listed  # three jobs and their one input
    assert api.gc(project, backend=fake)["triage"] == listed


def _three(p: ProjectDir) -> None:
    """review-a and review-b (team: shop), triage (team: support)."""
    for name, team in (("review-a", "shop"), ("review-b", "shop")):
        p.write(f"{name}.yaml", TRIAGE.replace("name: triage", f"name: {name}\n  labels: "
                                              f"{{team: {team}}}")
                .replace("out/triage", f"out/{name}"))
    p.write("triage.yaml", TRIAGE.replace("name: triage", "name: triage\n  labels: {team: support}"))


def test_target_takes_globs_and_select_takes_labels(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    _three(project_dir)

    def names(*args: str) -> list[str]:
        return [m["name"] for m in json.loads(run("plan", "--json", *args))["manifests"]]

    assert names("--target", "review*") == ["review-a", "review-b"]
    assert names("--target", "review-?", "--target", "triage") == ["review-a", "review-b",
                                                                   "triage"]
    assert names("--select", "label:team=support") == ["triage"]
    assert names("--select", "label:team=sh*") == ["review-a", "review-b"]
    assert names("--target", "*-b", "--select", "label:team=shop") == ["review-b"]
    out = run("plan", "--target", "reviw*", code=1)
    assert 'no manifest matches "reviw*"' in out
    assert 'no manifest has the label team=ops' in run("plan", "--select", "label:team=ops",
                                                       code=1)
    assert 'cannot read --select "team=ops"' in run("plan", "--select", "team=ops", code=1)
    run("apply", "--auto-approve", "--select", "label:team=support")
    assert (project_dir.root / ".batchrun").is_dir()
    assert names("--target", "review*") == ["review-a", "review-b"]
    doc = json.loads(run("plan", "--json"))
    assert {m["name"]: m["actions"] for m in doc["manifests"]}["review-a"] == ["create"]


def test_show_renders_a_saved_plan_from_anywhere(run, project_dir: ProjectDir,
                                                 tmp_path_factory: pytest.TempPathFactory,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    shown = run("plan", "--out", "plan.json")
    plan_text = shown.split("Saved the plan to")[0]
    saved = project_dir.root / "plan.json"
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # no project here: a plan file is enough
    monkeypatch.chdir(elsewhere)
    from click.testing import CliRunner

    from runner.cli import commands as cli

    text = CliRunner().invoke(cli.main, ["show", str(saved)])
    assert text.exit_code == 0, text.output
    assert text.stdout == plan_text
    assert "saved plan made" in text.stderr and "batchrun apply" in text.stderr
    doc = json.loads(CliRunner().invoke(cli.main, ["show", str(saved), "--json"]).stdout)
    assert doc["format_version"] == 1 and doc["created_at"]
    assert [m["name"] for m in doc["manifests"]] == ["triage"]
    assert doc["manifests"][0]["rows"]["to_do"] == 5 and "notes" in doc["manifests"][0]
    markdown = CliRunner().invoke(cli.main, ["show", str(saved), "--format", "markdown"]).stdout
    assert markdown.startswith("### batchrun plan: 1 manifest to change")
    (elsewhere / "not-a-plan.json").write_text('{"hello": 1}')
    wrong = CliRunner().invoke(cli.main, ["show", "not-a-plan.json"])
    assert wrong.exit_code == 1 and "invalid plan file" in wrong.stderr


def test_status_and_results_have_versioned_json(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    none = json.loads(run("status", "--json"))
    assert none["format_version"] == 1 and none["jobs"] == []
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.05")
    status = json.loads(run("status", "--json"))
    assert status["format_version"] == 1
    (job,) = status["jobs"]
    assert job["manifest"] == "triage" and job["state"] == "succeeded" and job["current_spec"]
    assert status["usage"][0]["manifest"] == "triage" and status["usage"][0]["rows"] == 5
    results = json.loads(run("results", "triage", "--json"))
    assert results["format_version"] == 1 and results["manifest"] == "triage"
    assert results["summary"] == {"rows": 5, "failed": 0, "stale": 0}
    assert [r["custom_id"] for r in results["rows"]] == ["T1", "T2", "T3", "T4", "T5"]
    assert results["rows"][0]["outcome"] == "succeeded"
    assert json.loads(run("results", "triage", "--format", "json")) == results


def test_a_spec_change_is_marked_apart_from_new_rows(run, project_dir: ProjectDir,  # type: ignore[no-untyped-def]
                                                    golden: Callable[[str, str], None]) -> None:
    """A prompt change showed `+ create`, as for rows never answered (Terraform shows `~`)."""
    new = json.loads(run("plan", "--json"))["manifests"][0]
    assert new["spec_change"] is None
    assert run("plan").startswith("+ triage  create: 5 rows in 1 job")
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.05")
    f = project_dir.root / "triage.yaml"
    f.write_text(f.read_text().replace("Classify the ticket.", "Sort the ticket."))
    with (project_dir.root / "tickets.csv").open("a") as fh:
        fh.write("T6,New,Body\n")
    shown = run("plan")
    assert shown.startswith("~ triage  re-run 5 rows (spec changed: prompt) and create 1 new "
                            "row, in 1 job"), shown
    golden("plan_spec_change.txt", shown)
    doc = json.loads(run("plan", "--json"))["manifests"][0]
    assert doc["actions"] == ["create"]  # what apply does is unchanged: it creates a job
    assert doc["spec_change"]["rows"] == 5 and doc["spec_change"]["changed"] == ["prompt"]
    assert "| `~` | triage | re-run, create |" in run("plan", "--format", "markdown")
    f.write_text(f.read_text().replace("max_tokens: 64", "max_tokens: 32"))
    doc = json.loads(run("plan", "--json"))["manifests"][0]
    assert doc["spec_change"]["changed"] == ["parameters", "prompt"]
    run("plan", "--out", "p.json")
    assert "re-run 5 rows (spec changed: parameters, prompt)" in run("show", "p.json")


def test_a_replace_says_what_changed(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    api.apply(load(project_dir), backend=fake)  # the job is still pending
    f = project_dir.root / "triage.yaml"
    f.write_text(f.read_text().replace("anthropic/claude-haiku-4-5@20251001",
                                       "anthropic/claude-sonnet-4@20250514"))
    plan = api.plan(load(project_dir), backend=fake).manifest("triage")
    assert plan.actions == ["replace"]
    cancel = next(c for c in plan.changes if c.action.value == "cancel")
    assert cancel.reason == "spec changed: model"
    from runner.views import plan as planview

    assert planview.headline(plan).startswith("cancel 1 job (spec changed: model)")


def test_every_plan_field_and_notice_passes_the_saved_plan_schema() -> None:
    """Found on the way: a plan with an other-answerer or passthrough notice (or a spec change)
    could not be saved: plan.v1.json did not know them."""
    import jsonschema

    from runner.planning.plan import (
        Action,
        Change,
        ManifestPlan,
        Note,
        NoteKind,
        Plan,
        RowCounts,
        SpecChange,
    )
    from runner.project import schemas

    notes = tuple(Note(kind, until="2026-01-01 00:00:00", rows=2, answered_by="local echo",
                       answerer="vertex", legacy=True) for kind in NoteKind)
    changes = tuple(Change(action, "why", rows=2) for action in Action)
    m = ManifestPlan("a", "a.yaml", "s" * 32, RowCounts(total=2, to_do=2), changes, notes=notes,
                     spec_change=SpecChange(2, ("prompt",), ("o" * 32,)))
    doc = Plan("local", (m,)).to_dict()
    validator = jsonschema.Draft202012Validator(schemas.load_schema("plan.v1"))
    assert [e.message for e in validator.iter_errors(doc)] == []
    assert Plan.from_dict(doc).manifests[0] == m
