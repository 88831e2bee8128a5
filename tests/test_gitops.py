"""GitOps and cost: saved plans and staleness, the pull-request view, estimates against actual usage,
budgets, targeting, protection from an environment overlay, and adopting an outside job."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from runner import api, estimate
from runner.backends.base import IndexEntry, JobRequest
from runner.backends.local.backend import LocalBackend
from runner.cli import errors as cli_errors
from runner.spec import Family
from tests.conftest import ProjectDir


def sent(p: ProjectDir) -> list[str]:
    log = p.root / ".batchrun" / "sent.jsonl"
    return [json.loads(x)["custom_id"] for x in log.read_text().splitlines()] if log.exists() else []


def wait_idle(p: ProjectDir) -> None:
    for _ in range(300):
        if not any(m.rows.in_flight for m in api.plan(api.load_project(cwd=p.root)).manifests):
            return
        time.sleep(0.05)
    raise AssertionError("jobs never finished")


def test_saved_plan_round_trip(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    out = run("plan", "--out", "plan.json")
    assert "Saved the plan to plan.json" in out
    doc = json.loads((project_dir.root / "plan.json").read_text())
    assert doc["format_version"] == 1
    assert "custom_id" not in json.dumps(doc)  # a plan holds digests, never the rendered rows
    assert "Applied the saved plan: 5 rows sent in 1 job," in run("apply", "plan.json")
    wait_idle(project_dir)
    run("apply", "--auto-approve")
    run("plan", "--detailed-exitcode")  # nothing left
    assert sorted(sent(project_dir)) == ["T1", "T2", "T3", "T4", "T5"]


@pytest.mark.parametrize(("cause", "message"), [
    ("manifest", 'manifest "triage" changed (triage.yaml)'),
    ("source", 'the source rows of "triage" changed'),
    ("jobs", "the remote jobs changed since the plan"),
    ("settings", "region is 'us-central1' now, None in the plan"),
])
def test_stale_plan_is_refused_naming_what_changed(run, project_dir: ProjectDir, cause: str,  # type: ignore[no-untyped-def]
                                                    message: str) -> None:
    run("plan", "--out", "plan.json")
    if cause == "manifest":
        f = project_dir.root / "triage.yaml"
        f.write_text(f.read_text().replace("max_attempts: 2", "max_attempts: 3"))
    elif cause == "source":
        f = project_dir.root / "tickets.csv"
        f.write_text(f.read_text().replace("Dark mode", "Dark theme"))
    elif cause == "jobs":
        run("apply", "--auto-approve")
        wait_idle(project_dir)
    else:
        project_dir.write("batchrun.yaml", "region: us-central1\n")
    before = len(sent(project_dir))
    out = run("apply", "plan.json", code=1)
    assert "the plan is stale" in out and message in out
    assert "run `batchrun plan --out FILE` again" in out
    time.sleep(0.3)
    assert len(sent(project_dir)) == before  # nothing was sent by the refused apply


def test_plan_from_a_newer_format_or_tampered_is_refused(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run("plan", "--out", "plan.json")
    path = project_dir.root / "plan.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format_version": 2}))
    assert "plan format 2 was made by a newer batchrun" in run("apply", "plan.json", code=1)
    doc["manifests"][0]["rows"] = "many"
    path.write_text(json.dumps(doc))
    assert "invalid plan file" in run("apply", "plan.json", code=1)


def test_markdown_for_pull_requests(run, golden) -> None:  # type: ignore[no-untyped-def]
    golden("plan_markdown.md", run("plan", "--format", "markdown"))


def test_estimate_matches_actual_usage_within_the_documented_error(project_dir: ProjectDir) -> None:
    api.converge(api.load_project(cwd=project_dir.root), poll_interval=0.1, timeout=60)
    f = project_dir.root / "triage.yaml"
    f.write_text(f.read_text().replace("Classify the ticket.", "Classify the support ticket."))
    project = api.load_project(cwd=project_dir.root)
    before = api.plan(project).manifest("triage").estimate
    assert before.output_basis == "history"
    api.converge(project, poll_interval=0.1, timeout=60)
    rows = [r for r in api.results(project, "triage") if r["spec_hash"] == project.manifests[0].spec_hash]
    used_in = sum(r["usage"]["input_tokens"] for r in rows)
    used_out = sum(r["usage"]["output_tokens"] for r in rows)
    assert abs(before.input_tokens - used_in) <= estimate.DOCUMENTED_ERROR * used_in
    assert abs(before.output_tokens - used_out) <= estimate.DOCUMENTED_ERROR * used_out
    price = estimate.price_for(project.manifests[0].model, {})
    assert price is not None and before.cost is not None
    actual = price.cost(used_in, used_out)
    assert abs(before.cost - actual) <= estimate.DOCUMENTED_ERROR * actual


def test_over_budget_fails_with_its_own_exit_code_before_sending(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    f = project_dir.root / "triage.yaml"
    f.write_text(f.read_text().replace("max_attempts: 2", "max_attempts: 2\n  max_cost: 0.0001"))
    out = run("plan", code=cli_errors.EXIT_BUDGET)
    # Amounts this small keep two significant digits (a red-team find: "$0.00 is more than $0.00").
    assert re.search(r"over budget: estimated \$0\.000\d\d is more than max_cost \$0\.00010", out)
    run("apply", "--auto-approve", code=cli_errors.EXIT_BUDGET)
    f.write_text(f.read_text().replace("max_cost: 0.0001", "max_cost: 5"))
    project_dir.write("batchrun.yaml", "max_cost: 0.0002\n")
    assert "this apply is estimated at" in run("apply", "--auto-approve", code=cli_errors.EXIT_BUDGET)
    assert not (project_dir.root / ".batchrun" / "jobs").exists()  # nothing was created


def test_target_limits_plan_and_apply(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    project_dir.write("other.yaml", (project_dir.root / "triage.yaml").read_text()
                      .replace("name: triage", "name: other").replace("out/triage", "out/other"))
    doc = json.loads(run("plan", "--json", "--target", "other"))
    assert [m["name"] for m in doc["manifests"]] == ["other"]
    run("apply", "--auto-approve", "--target", "other")
    wait_idle(project_dir)
    doc = json.loads(run("plan", "--json"))
    actions = {m["name"]: m["actions"] for m in doc["manifests"]}
    assert actions == {"other": ["collect"], "triage": ["create"]}
    assert "no manifest named" in run("plan", "--target", "nope", code=1)


def test_protect_from_an_environment_overlay(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    project_dir.write("batchrun.yaml", """\
        environments:
          prod: {defaults: {protect: true}}
        local:
          executor: {type: openai, base_url: "http://127.0.0.1:9/v1", timeout: 30}
        """)
    run("--env", "prod", "apply", "--auto-approve")  # a job that stays running (endpoint is down)
    f = project_dir.root / "triage.yaml"
    f.write_text(f.read_text().replace("max_tokens: 64", "max_tokens: 32"))
    out = run("--env", "prod", "apply", "--auto-approve", code=1)
    assert "triage is protected: refusing to cancel 1 running job;" in out
    assert "cancel" in run("apply", "--auto-approve")  # without the overlay: replaced
    run("--env", "prod", "cancel", "triage")


def test_import_adopts_an_outside_job(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    project = api.load_project(cwd=project_dir.root)
    backend = LocalBackend(project.settings)
    lines = [json.dumps({"custom_id": f"T{i}", "request": {"messages": [
        {"role": "user", "content": f"hand-made {i}"}], "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 5}}).encode() for i in (1, 2, 3)]
    staged = backend.stage("outside", [(x, IndexEntry(f"T{i}", "h", {})) for i, x in
                                       zip((1, 2, 3), lines, strict=True)])
    job = backend.create_job(JobRequest(display_name="made-by-hand", model="publishers/anthropic/"
                                        "models/claude-haiku-4-5@20251001", family=Family.CLAUDE,
                                        input=staged, labels={"team": "x"}))
    for _ in range(200):
        if backend.get_job(job.name).state.finished:
            break
        time.sleep(0.05)
    assert "Imported 3 answers" in run("import", "triage", job.name)
    doc = json.loads(run("plan", "--json"))
    assert doc["manifests"][0]["rows"]["done"] == 3 and doc["manifests"][0]["rows"]["to_do"] == 2
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    assert sorted(sent(project_dir)) == ["T1", "T2", "T3", "T4", "T5"]  # T1-T3 only by the outside job
    results = {r["custom_id"]: r for r in api.results(project, "triage")}
    assert results["T1"]["output"] == "hand-made 1" and results["T4"]["output"].startswith("Refund")


def test_status_shows_tokens_and_cost_used(run) -> None:  # type: ignore[no-untyped-def]
    run("apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
    out = run("status")
    assert "triage: 5 answers used" in out and "input +" in out and "$" in out


def test_ci_workflow_example_is_shipped() -> None:
    workflow = Path(__file__).resolve().parent.parent / "docs" / "ci" / "github-actions.yml"
    text = workflow.read_text()
    assert "plan --format markdown" in text and "apply --auto-approve" in text


def test_budget_on_a_model_without_a_price_is_refused_not_crashed(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    f = project_dir.root / "triage.yaml"
    f.write_text(f.read_text().replace("anthropic/claude-haiku-4-5@20251001",
                                       "anthropic/claude-fable-9@20300101")
                 .replace("max_attempts: 2", "max_attempts: 2\n  max_cost: 5"))
    out = run("plan", code=cli_errors.EXIT_BUDGET)
    assert "no price is known for this model" in out and "Traceback" not in out
