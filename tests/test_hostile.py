"""Hostile and careless input (issue 11), as a pull request or a careless user would write it: a plan
that cannot write, destinations that belong to exactly one manifest, paths that stay in the
project, limits on YAML and templates, secrets never stored, corrupt state contained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from runner import api
from runner.backends.base import JobRequest, RemoteJob
from runner.spec import DestinationSpec
from tests.conftest import ProjectDir
from tests.fakes import FakeBackend
from tests.vertex_env import VertexWorld


def batchrun(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[
        str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=root, text=True,
                          capture_output=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


# --- 1. plan runs no SQL but a single SELECT ----------------------------------------------------

@pytest.mark.parametrize(("query", "kind"), [
    ("DROP TABLE `{victim}`; SELECT 'x1' AS id, 'hi' AS text", "SCRIPT"),
    ("DELETE FROM `{victim}` WHERE true", "DELETE"),
    ("CREATE TABLE `{victim}_2` AS SELECT 'x1' AS id, 'hi' AS text", "CREATE_TABLE_AS_SELECT"),
])
def test_plan_refuses_a_query_source_that_would_write(vertex: VertexWorld, query: str,
                                                      kind: str) -> None:
    vertex.load_table("victim", [{"id": "v1"}], [("id", "STRING")])
    sql = query.format(victim=vertex.table("victim"))
    vertex.p.write("q.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: q}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 10}}
          source:
            bigquery:
              query: "{sql}"
            id: id
            columns: [id, text]
          prompt: {{user: "{{{{ text }}}}"}}
          destination: {{file: out/q.jsonl}}
        """)
    result = batchrun(vertex.p.root, "plan", env=vertex.env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"Error: refusing to run a query source that BigQuery reads as a {kind} statement; "
            "only a single SELECT may be a source\n  in q.yaml, line 9, at "
            "spec.source.bigquery.query") in result.stderr
    assert "Traceback" not in result.stderr
    tables = {t.table_id for t in vertex.bq.list_tables(vertex.dataset)}
    assert tables == {"victim"}
    assert [dict(r) for r in vertex.bq.list_rows(vertex.table("victim"))] == [{"id": "v1"}]


def test_a_select_query_source_still_plans(vertex: VertexWorld) -> None:
    vertex.p.write("q.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: q}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {max_tokens: 10}
          source:
            bigquery: {query: "SELECT 'x1' AS id, 'hi' AS text"}
            id: id
            columns: [id, text]
          prompt: {user: "{{ text }}"}
          destination: {file: out/q.jsonl}
        """)
    assert api.plan(vertex.project()).manifest("q").rows.to_do == 1


# --- apply --wait cannot loop paying -------------------------------------------------------------

class _Forgetful(FakeBackend):
    """A destination that records nothing: every answer collected is lost on the way."""

    def write_destination(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]],
                          *, collected: Iterable[str], append: bool = False) -> None:
        super().write_destination(dest, iter(()), collected=collected)

    def create_job(self, request: JobRequest) -> RemoteJob:
        job = super().create_job(request)
        self.run(job.name)
        return self.jobs[job.name]


def test_the_same_rows_sent_again_without_an_answer_landing_block_the_manifest(
        project_dir: ProjectDir) -> None:
    # The fake's clock says January: a long retention keeps gc from clearing the evidence.
    project_dir.write("batchrun.yaml", "quota: {failure_backoff: 0}\nretention: 30000\n")
    fake = _Forgetful()
    final = api.converge(api.load_project(cwd=project_dir.root), backend=fake,
                         poll_interval=0.01, timeout=10)
    m = final.manifest("triage")
    assert m.blocked is not None and m.blocked.failures == 3
    assert "none of its rows' answers or refusals reached the destination" in m.blocked.error
    assert len(fake.created()) == 3  # three jobs, not one a second until killed
    assert set(fake.sent.values()) == {3}


# --- destinations belong to one manifest; paths stay in the project -------------------------------

def _second(p: ProjectDir, name: str = "second", dest: str = "out/triage.jsonl") -> None:
    p.write(f"{name}.yaml", (p.root / "triage.yaml").read_text()
            .replace("name: triage", f"name: {name}")
            .replace("destination: {file: out/triage.jsonl}", f"destination: {{file: {dest}}}"))


def test_a_destination_owned_twice_is_refused_whatever_paths_are_given(
        project_dir: ProjectDir) -> None:
    """Applied one at a time (`apply a.yaml`, then `apply b.yaml`), two manifests overwrote each
    other's answers and paid for them again."""
    _second(project_dir)
    root = project_dir.root
    for args in (["plan", "triage.yaml"], ["apply", "--auto-approve", "second.yaml"],
                 ["validate", "second.yaml"]):
        result = batchrun(root, *args)
        assert result.returncode == 1, result.stdout + result.stderr
        assert 'destination is also written by "' in result.stderr
    assert not (root / "out").exists() and not (root / ".batchrun" / "jobs").exists()


@pytest.mark.parametrize(("change", "message"), [
    ('source: {file: "../../../../../../../../etc/passwd", format: csv, id: ticket_id}',
     'source file "../../../../../../../../etc/passwd" is outside the project'),
    ("destination: {file: ../../escaped-out.jsonl}",
     'destination "../../escaped-out.jsonl" is outside the project'),
    ("destination: {file: /tmp/escaped-abs.jsonl}",
     'destination "/tmp/escaped-abs.jsonl" is outside the project'),
    ("destination: {file: .batchrun/steal.jsonl}",
     'destination ".batchrun/steal.jsonl" is inside .batchrun/'),
    ("destination: {file: tickets.csv}", "the destination is this manifest's own source file"),
    ("system: {file: /etc/hostname}", "template file /etc/hostname is outside the project"),
])
def test_paths_stay_in_the_project(project_dir: ProjectDir, change: str, message: str) -> None:
    manifest = project_dir.root / "triage.yaml"
    text = manifest.read_text()
    key = change.split(":", 1)[0]
    lines = [change if line.strip().startswith(key + ":") else line for line in text.splitlines()]
    if key == "system":
        lines = [f"    {change}" if line.strip().startswith("system:") else line for line in lines]
    else:
        lines = [f"  {change}" if line.strip().startswith(key + ":") else line for line in lines]
    manifest.write_text("\n".join(lines) + "\n")
    result = batchrun(project_dir.root, "plan")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_symlinked_output_folder_that_leaves_the_project_is_refused(
        project_dir: ProjectDir, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project_dir.root / "out").symlink_to(elsewhere, target_is_directory=True)
    result = batchrun(project_dir.root, "apply", "--auto-approve")
    assert result.returncode == 1 and 'destination "out/triage.jsonl" is outside the project' in \
        result.stderr
    project_dir.write("batchrun.yaml", f"allow_paths_outside: [{elsewhere}]\n")
    assert batchrun(project_dir.root, "plan").returncode == 0  # opted out, by folder


def test_bigquery_and_cloud_storage_names_that_would_fail_after_paying() -> None:
    from runner.project.checks import _BQ_COLUMN, _gs_problem

    assert not _BQ_COLUMN.match("x`y") and _BQ_COLUMN.match("ticket_id")
    assert _gs_problem("gs://bucket/a/../../b/") and _gs_problem("gs://bucket/a//b")
    assert _gs_problem("gs://bucket/a/b/") is None


def test_a_read_only_destination_is_refused_not_replaced(project_dir: ProjectDir) -> None:
    root = project_dir.root
    assert batchrun(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1").returncode == 0
    out = root / "out" / "triage.jsonl"
    before = out.read_bytes()
    out.chmod(0o444)
    (root / "tickets.csv").write_text((root / "tickets.csv").read_text() + "T6,New,Another\n")
    result = batchrun(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1",
                      "--timeout", "20")
    assert result.returncode == 1 and "is read-only; refusing to replace it" in result.stderr
    assert out.read_bytes() == before and (out.stat().st_mode & 0o777) == 0o444
    out.chmod(0o644)
    assert batchrun(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1").returncode == 0
    assert len(out.read_text().splitlines()) == 6  # the answer waited in its job, not paid again


# --- corrupt state is contained --------------------------------------------------------------------

@pytest.mark.parametrize("cut", ["tail", "labels", "empty", "everything"])
def test_a_damaged_job_record_is_quarantined_and_only_its_rows_wait(project_dir: ProjectDir,
                                                                    cut: str) -> None:
    """A truncated job.json stopped every plan with `unexpected JSONDecodeError`. Now the record
    is moved aside and the job counts as running: with its labels intact its rows are in flight;
    without them its manifest is blocked until the user looks. Other manifests go on."""
    root = project_dir.root
    _second(project_dir, "other", "out/other.jsonl")
    assert batchrun(root, "apply", "--auto-approve", "--target", "triage").returncode == 0
    (job,) = (root / ".batchrun" / "jobs").iterdir()
    import time

    deadline = time.monotonic() + 30
    while json.loads((job / "job.json").read_text())["state"] != "JOB_STATE_SUCCEEDED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    raw = (job / "job.json").read_text()
    end = {"tail": raw.index('"createTime"'), "labels": raw.index('"batchrun-spec"') + 30,
           "empty": 0, "everything": 0}[cut]
    (job / "job.json").write_text(raw[:end])
    if cut == "labels" or cut == "everything":
        (job / "labels.json").unlink()  # the copy written at create is gone too
    plan = batchrun(root, "plan", "--json")
    assert plan.returncode == 0, plan.stderr
    doc = {m["name"]: m for m in json.loads(plan.stdout)["manifests"]}
    if cut in ("tail", "empty"):  # the labels survive (in the record, or in labels.json)
        assert doc["triage"]["rows"]["in_flight"] == 5 and doc["triage"]["rows"]["to_do"] == 0
    else:
        assert doc["triage"]["blocked"] and "quarantine" in doc["triage"]["blocked"]["error"]
        assert not doc["triage"]["actions"]  # nothing sent, nothing cancelled
    if cut == "everything":  # whose job it was is lost: nobody sends until the user looks
        assert doc["other"]["blocked"] and not doc["other"]["actions"]
        return
    assert doc["other"]["rows"]["to_do"] == 5  # other manifests plan normally
    assert (root / ".batchrun" / "quarantine" / job.name / "job.json").is_file()
    # The table folds long cells at the terminal's width (a longer tmp path moves the fold): the
    # message is read whole from --json, and the table is asked only to show the job at all.
    errors = [j["error"] or "" for j in json.loads(batchrun(root, "status", "--json").stdout)["jobs"]]
    assert any("moved to" in e and "quarantine" in e for e in errors), errors
    assert job.name.rsplit("/", 1)[-1][:8] in batchrun(root, "status").stdout
    assert batchrun(root, "apply", "--auto-approve", "--target", "other").returncode == 0


def test_a_damaged_index_names_its_file(project_dir: ProjectDir) -> None:
    root = project_dir.root
    assert batchrun(root, "apply", "--auto-approve").returncode == 0
    (index,) = (root / ".batchrun" / "staging" / "triage").glob("*.index.jsonl")
    index.write_text(index.read_text()[:-30])
    result = batchrun(root, "plan")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the index of a job is damaged: {index}" in result.stderr


# --- issue 12: Google errors in one line with the fix ---------------------------------------------

def test_a_missing_bucket_or_dataset_is_named_with_the_fix(vertex: VertexWorld, golden) -> None:  # type: ignore[no-untyped-def]
    vertex.p.write("rows.jsonl", '{"id": "a1", "text": "hi"}\n')
    vertex.p.write("m.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: m}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 10}}
          source: {{file: rows.jsonl, id: id}}
          prompt: {{user: "{{{{ text }}}}"}}
          destination: {{bigquery: {{table: {vertex.table("x").replace(vertex.dataset, "nope")}}}}}
        """)
    result = batchrun(vertex.p.root, "plan", env=vertex.env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    golden("errors/missing-dataset.txt", result.stderr.replace(vertex.suffix, "SUFFIX"))
    settings = (vertex.p.root / "batchrun.yaml").read_text()
    vertex.p.write("batchrun.yaml", settings.replace(vertex.bucket, "no-such-bucket-here"))
    vertex.p.write("m.yaml", (vertex.p.root / "m.yaml").read_text().replace(
        f"{{bigquery: {{table: {vertex.table('x').replace(vertex.dataset, 'nope')}}}}}",
        "{file: out/m.jsonl}"))
    result = batchrun(vertex.p.root, "apply", "--auto-approve", env=vertex.env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    golden("errors/missing-bucket.txt", result.stderr)


def test_destinations_that_belong_to_no_one_else(project_dir: ProjectDir) -> None:
    """Red-team: a destination inside a nested project, or named like another destination's
    sidecar, was accepted and paid for twice; a name used twice passed when selected by path."""
    root = project_dir.root
    project_dir.write("sub/batchrun.yaml", "backend: local\n")
    _second(project_dir, "nested", "sub/x.jsonl")
    result = batchrun(root, "plan", "nested.yaml")
    assert result.returncode == 1 and "the destination is inside another project" in result.stderr
    (root / "nested.yaml").unlink()
    _second(project_dir, "sidecar", "out/.triage.jsonl.batchrun.json")
    result = batchrun(root, "plan", "sidecar.yaml")
    assert result.returncode == 1 and "is not a result file name" in result.stderr
    (root / "sidecar.yaml").unlink()
    project_dir.write("copy/t.yaml", (root / "triage.yaml").read_text()
                      .replace("file: tickets.csv", "file: ../tickets.csv")
                      .replace("out/triage.jsonl", "out/copy.jsonl"))
    result = batchrun(root, "plan", "copy/t.yaml")
    assert result.returncode == 1 and 'name "triage" is also used in' in result.stderr


@pytest.mark.parametrize(("content", "message"), [
    ("null\n" + '{"user": "alice"}\n', "already exists and was not written by batchrun"),
    ('{"custom_id": "T1", "status": "succeeded", "spec_hash": "s", "request_hash": "r"}\n5\n',
     "line 2 is not a JSON object"),
])
def test_a_destination_that_is_not_ours_is_never_replaced(project_dir: ProjectDir, content: str,
                                                          message: str) -> None:
    out = project_dir.root / "out" / "triage.jsonl"
    out.parent.mkdir()
    out.write_text(content)
    result = batchrun(project_dir.root, "apply", "--auto-approve")
    assert result.returncode == 1 and message in result.stderr and "unexpected" not in result.stderr
    assert out.read_text() == content


def test_damaged_sidecars_indexes_and_csv_cells_name_their_file(project_dir: ProjectDir) -> None:
    root = project_dir.root
    manifest = root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("out/triage.jsonl", "out/triage.csv"))
    assert batchrun(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1").returncode == 0
    sidecar = root / "out" / ".triage.csv.batchrun.json"
    sidecar.write_text('{"collected_jobs": 5, "forgiven_jobs": [[1]]}')
    plan = batchrun(root, "plan")
    assert plan.returncode == 0 and "Traceback" not in plan.stderr  # re-collected, not paid
    out = root / "out" / "triage.csv"
    text = out.read_text()
    out.write_text(text.replace(",1,", ",many,", 1))
    plan = batchrun(root, "plan")
    assert plan.returncode == 1 and f"destination {out} line 2 is not as batchrun wrote it" in \
        plan.stderr
    out.write_text(text)
    (index,) = (root / ".batchrun" / "staging" / "triage").glob("*.index.jsonl")
    index.write_text(index.read_text().replace('"passthrough":{', '"passthrough":3,"x":{', 1))
    plan = batchrun(root, "plan")
    assert plan.returncode == 1 and "the index of a job is damaged" in plan.stderr


def test_google_errors_are_explained() -> None:
    from runner.backends.vertex.explain import explain

    def named(name: str, text: str) -> Exception:
        return type(name, (Exception,), {})(text)

    cases = {
        ("Forbidden", "403 aiplatform.googleapis.com has not been used in project p before or it "
                      "is disabled. SERVICE_DISABLED"):
            "the aiplatform.googleapis.com API is not enabled in this project",
        ("Forbidden", "403 GET https://storage: svc@p.iam does not have storage.objects.create "
                      "access to the Google Cloud Storage object."):
            "permission denied (missing storage.objects.create)",
        ("NotFound", "404 Not found: Dataset p:d was not found in location US"):
            "the BigQuery dataset p:d does not exist",
        ("NotFound", "404 GET https://storage: The specified bucket does not exist."):
            "the Cloud Storage bucket does not exist",
        ("RefreshError", "invalid_grant: Token has been expired or revoked."):
            "the Google credentials were refused or have expired",
    }
    for (name, text), summary in cases.items():
        found = explain(named(name, text))
        assert found is not None and found.summary.startswith(summary), (name, found)
        assert found.hint
    assert explain(ValueError("something else")) is None


def test_a_full_disk_in_the_worker_is_said_as_such() -> None:
    import errno

    from runner.backends.local.worker import _error_text

    text = _error_text(OSError(errno.ENOSPC, "No space left on device", "/x/predictions.jsonl"))
    assert text == "local I/O error: No space left on device (/x/predictions.jsonl)"


def test_a_150_kb_answer_round_trips_through_a_csv_destination(project_dir: ProjectDir) -> None:
    """Issue 11, case 3: a CSV destination with a field over 128 KiB failed every later plan."""
    root = project_dir.root
    project_dir.write("batchrun.yaml", "quota: {max_request_bytes: 400000}\n")
    project_dir.write("rows.jsonl", json.dumps({"id": "big", "text": "w " * 75_000}) + "\n")
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text()
                      .replace("file: tickets.csv, id: ticket_id", "file: rows.jsonl, id: id")
                      .replace('"{{ subject }}: {{ body }}"', '"{{ text }}"')
                      .replace("passthrough: [subject]", "passthrough: []")
                      .replace("out/triage.jsonl", "out/triage.csv"))
    for _ in range(2):
        result = batchrun(root, "apply", "--auto-approve", "--wait", "--poll-interval", "0.1")
        assert result.returncode == 0, result.stderr
    rows = batchrun(root, "results", "triage", "--format", "jsonl")
    assert len(json.loads(rows.stdout)["output"]) == 150_000


def test_a_destination_being_written_elsewhere_is_said_in_its_own_terms(
        project_dir: ProjectDir) -> None:
    """Applies lock the destination too (another checkout of the same repository writes it)."""
    from runner.applying.writer import lock_names
    from runner.backends.local.backend import LocalBackend

    project = api.load_project(cwd=project_dir.root)
    _, dest = lock_names(project.manifests[0])
    message = r"triage: its destination .*out/triage\.jsonl is being written by another apply: pid"
    with LocalBackend(project.settings).lock(dest), pytest.raises(api.BatchrunError, match=message):
        api.apply(project, backend=LocalBackend(project.settings))
    assert not (project_dir.root / ".batchrun" / "jobs").exists()
