"""Issue 21: an answer is known by everything that made it — the spec and request, the model, and
who answered (the backend, the executor and where it points). A model or executor switched under
stored answers re-runs them; a passthrough column added or removed is filled from the source,
free; a row out of attempts is `failed` wherever it is shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from runner import api
from tests.conftest import ProjectDir
from tests.stub_endpoint import StubServer

WAIT = ("apply", "--auto-approve", "--wait", "--poll-interval", "0.2")


def _sent(root: Path) -> int:
    """Rows the local executors were handed, ever (the worker's own record)."""
    log = root / ".batchrun" / "sent.jsonl"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _results(root: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in (root / "out" / "triage.jsonl").read_text().splitlines()]
    return {r["custom_id"]: r for r in rows}


def test_a_claude_model_change_sends_every_row_again_under_the_new_model(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run(*WAIT)
    assert _sent(project_dir.root) == 5
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("claude-haiku-4-5@20251001",
                                                     "claude-sonnet-4-5@20250929"))
    shown = run("plan")
    assert "reshape" not in shown  # a Claude request line carries no model: it is not the answer
    assert "5 to do" in shown
    run(*WAIT)
    assert _sent(project_dir.root) == 10  # every row once more, under the new model
    rows = _results(project_dir.root)
    assert {r["model"] for r in rows.values()} == {"anthropic/claude-sonnet-4-5@20250929"}
    assert {r["answered_by"] for r in rows.values()} == {"local echo"}
    assert "up to date" in run("plan")


def test_echo_answers_never_count_as_an_endpoints(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run(*WAIT)  # the offline echo executor answers every row with its prompt
    assert _sent(project_dir.root) == 5
    with StubServer().start() as stub:
        project_dir.write("batchrun.yaml", f"""\
            backend: local
            local:
              executor: {{type: anthropic, base_url: "{stub.url}", model: claude-test}}
            """)
        shown = run("plan")
        who = f"local anthropic {stub.url.rstrip('/')} claude-test"
        assert f"5 answers were made by local echo: to do under {who}" in shown
        assert "5 to do" in shown
        stored = {r["custom_id"]: r["outcome"] for r in api.results(
            api.load_project(cwd=project_dir.root), "triage")}
        assert set(stored.values()) == {"stale"}
        run(*WAIT)
        assert sorted(stub.seen()) == sorted(  # every row sent to the endpoint, once
            f"{s}: {b}" for s, b in (("Charged twice", "My card was charged twice."),
                                     ("App crashes", "The app closes on login."),
                                     ("Export?", "Can I export to CSV?"),
                                     ("Refund", "Where is my refund?"),
                                     ("Dark mode", "Please add dark mode.")))
        rows = _results(project_dir.root)
        assert {r["answered_by"] for r in rows.values()} == {who}
        assert rows["T1"]["output"] == "CHARGED TWICE: MY CARD WAS CHARGED TWICE."
        assert "up to date" in run("plan")
        assert sum(stub.seen().values()) == 5
    project_dir.write("batchrun.yaml", "backend: local\n")  # and back to echo: echo's again
    assert "5 answers were made by local anthropic" in run("plan")


def test_a_passthrough_column_added_or_removed_is_filled_from_the_source_for_free(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run(*WAIT)
    manifest = project_dir.root / "triage.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("passthrough: [subject]", "passthrough: [subject, body]"))
    shown = run("plan")
    assert "reshape 5 rows from their stored answers, $0" in shown
    assert "5 stored rows lack the passthrough columns now asked for" in shown
    run(*WAIT)
    assert _sent(project_dir.root) == 5  # nothing sent
    rows = _results(project_dir.root)
    assert rows["T2"]["body"] == "The app closes on login." and rows["T2"]["subject"] == "App crashes"
    assert list(rows["T2"])[:3] == ["custom_id", "subject", "body"]
    assert "up to date" in run("plan")

    manifest.write_text(text.replace("passthrough: [subject]", "passthrough: [body]"))
    assert "reshape 5 rows" in run("plan")
    run(*WAIT)
    rows = _results(project_dir.root)
    assert all("subject" not in r and r["body"] for r in rows.values())
    assert _sent(project_dir.root) == 5
    assert "up to date" in run("plan")


def test_a_row_out_of_attempts_is_failed_in_results_report_and_status(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    run(*WAIT)  # every row answered under the first prompt
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("Classify the ticket.", "Triage the ticket."))
    project_dir.write("batchrun.yaml", "backend: local\nlocal:\n  executor: {type: echo, "
                                       "fail_ids: [T3]}\n")
    run(*WAIT, code=5)  # T3 refused max_attempts (2) times: the run ends with a failed row
    run(*WAIT, code=5)
    lines = [json.loads(x) for x in run("results", "triage", "--format", "jsonl").splitlines()]
    by_id = {r["custom_id"]: r for r in lines}
    assert by_id["T3"]["outcome"] == "failed" and by_id["T3"]["error"]
    assert {r["outcome"] for i, r in by_id.items() if i != "T3"} == {"succeeded"}
    table = run("results", "triage")
    assert "5 rows, 1 failed" in table and "stale" not in table
    assert "! T3:" in table
    assert "stored rows: 4 succeeded, 1 failed, 0 stale" in run("status")
    run("report", "triage", "-o", "report.html")
    page = (project_dir.root / "report.html").read_text()
    data = json.loads(page.split('<script type="application/json" id="data">', 1)[1]
                      .split("</script>", 1)[0])
    states = [row[1] for row in data["rows"]]
    assert states.count("failed") == 1 and "stale" not in states
    failed = next(row for row in data["rows"] if row[0] == "T3")
    assert failed[data["columns"].index("error")]  # with the error of its last attempt
    from runner.observe import report

    totals = report.gather(api.load_project(cwd=project_dir.root).manifest("triage"),
                           api.open_backend(api.load_project(cwd=project_dir.root)),
                           api.load_project(cwd=project_dir.root).settings).totals
    assert totals["failed"] == 1 and totals["stale"] == 0 and totals["answered"] == 4


def test_answers_written_by_the_previous_release_stay_done(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """tests/data/release-11d2367/triage.jsonl is what release 11d2367 wrote for this project
    (conftest's triage manifest, echo): no answered_by. Its answers stay done: nothing re-paid."""
    (project_dir.root / "out").mkdir()
    shutil.copy(Path(__file__).parent / "data" / "release-11d2367" / "triage.jsonl",
                project_dir.root / "out" / "triage.jsonl")
    shown = run("plan")
    assert "up to date" in shown and "0 to do" in shown
    run(*WAIT)
    assert _sent(project_dir.root) == 0
    outcomes = {r["outcome"] for r in api.results(api.load_project(cwd=project_dir.root),
                                                  "triage")}
    assert outcomes == {"succeeded"}


def test_local_echo_then_vertex_on_one_destination_sends_every_row(
        vertex: Any, monkeypatch: Any) -> None:
    """`batchrun init`'s two environments share a destination: echo's answers made locally are
    not Claude's on Vertex; every row goes to the (fake) Vertex server once."""
    vertex.p.write("tickets.csv", "ticket_id,subject\nT1,one\nT2,two\nT3,three\n")
    vertex.p.write("triage.yaml", """\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {name: triage}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {max_tokens: 16}
          source: {file: tickets.csv, id: ticket_id}
          prompt: {user: "{{ subject }}"}
          destination: {file: out/triage.jsonl}
        """)
    monkeypatch.setenv("BATCHRUN_BACKEND", "local")
    vertex.converge()
    assert {r["answered_by"] for r in _results(vertex.p.root).values()} == {"local echo"}
    monkeypatch.delenv("BATCHRUN_BACKEND")
    plan = api.plan(vertex.project())
    assert plan.manifest("triage").rows.to_do == 3
    vertex.converge()
    assert vertex.sent_ids() == ["T1", "T2", "T3"]
    rows = _results(vertex.p.root)
    assert {r["answered_by"] for r in rows.values()} == {"vertex"}
    assert not api.plan(vertex.project()).has_changes
    assert vertex.sent_ids() == ["T1", "T2", "T3"]


def test_on_bigquery_a_model_change_re_runs_and_a_passthrough_column_is_filled(
        vertex: Any) -> None:
    rows = [{"review_id": f"r{i}", "product": f"p{i}", "text": f"text {i}"} for i in range(1, 4)]
    vertex.load_table("reviews", rows, [("review_id", "STRING"), ("product", "STRING"),
                                        ("text", "STRING")])
    text = f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: reviews}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 16}}
          source: {{bigquery: {{table: {vertex.table("reviews")}}}, id: review_id}}
          prompt: {{user: "{{{{ text }}}}"}}
          passthrough: [product]
          destination: {{bigquery: {{table: {vertex.table("answers")}}}}}
        """
    vertex.p.write("reviews.yaml", text)
    vertex.converge()
    assert vertex.sent_ids() == ["r1", "r2", "r3"]
    vertex.p.write("reviews.yaml", text.replace("passthrough: [product]",
                                                "passthrough: [product, text]"))
    plan = api.plan(vertex.project()).manifest("reviews")
    assert plan.rows.reshape == 3 and plan.rows.to_do == 0
    vertex.converge()
    assert vertex.sent_ids() == ["r1", "r2", "r3"]  # nothing sent
    stored = vertex.rows("answers")
    assert stored["r2"]["text"] == "text 2" and stored["r2"]["product"] == "p2"
    assert stored["r2"]["answered_by"] == "vertex"
    assert not api.plan(vertex.project()).has_changes

    vertex.p.write("reviews.yaml", text.replace("passthrough: [product]",
                                                "passthrough: [product, text]").replace(
        "claude-haiku-4-5@20251001", "claude-sonnet-4-5@20250929"))
    plan = api.plan(vertex.project()).manifest("reviews")
    assert plan.rows.reshape == 0 and plan.rows.to_do == 3
    vertex.converge()
    assert vertex.sent_ids() == ["r1", "r1", "r2", "r2", "r3", "r3"]
    assert {r["model"] for r in vertex.rows("answers").values()} == {
        "anthropic/claude-sonnet-4-5@20250929"}


def test_an_endpoint_refusing_a_row_echo_answered_spends_its_attempts(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """A refusal of the same request beside echo's answer is counted: the row is sent
    max_attempts (2) times, then failed — not sent on every apply."""
    project_dir.write("tickets.csv", "ticket_id,subject,body\nT1,REFUSE me,x\nT2,fine,y\n")
    run(*WAIT)
    with StubServer().start() as stub:
        project_dir.write("batchrun.yaml", f"""\
            backend: local
            local:
              executor: {{type: anthropic, base_url: "{stub.url}", model: claude-test}}
            """)
        run(*WAIT, code=5)
        run(*WAIT, code=5)
        run(*WAIT, code=5)
        assert stub.seen()["REFUSE me: x"] == 2 and stub.seen()["fine: y"] == 1
        shown = run("plan")
        assert "1 failed" in shown and "0 to do" in shown


def test_on_change_forward_keeps_no_answer_of_another_answerer(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("max_attempts: 2",
                                                     "max_attempts: 2\n  on_change: forward"))
    run(*WAIT)
    with StubServer().start() as stub:
        project_dir.write("batchrun.yaml", f"""\
            backend: local
            local:
              executor: {{type: anthropic, base_url: "{stub.url}", model: claude-test}}
            """)
        manifest.write_text(manifest.read_text().replace("Classify", "Sort"))
        shown = run("plan")
        assert "kept from older specs" not in shown and "5 to do" in shown
        run(*WAIT)
        assert sum(stub.seen().values()) == 5


def test_who_answered_is_told_without_credentials_and_old_rows_by_their_job() -> None:
    from runner.identity import local_answerer, same_answerer

    who = local_answerer({"type": "openai", "base_url": "http://u:pw@h:8000/v1/?key=s3cret",
                          "model": "qwen", "api_key_env": "KEY", "concurrency": 9})
    assert who == "local openai http://h:8000/v1 qwen"
    assert local_answerer({"type": "echo"}) == "local echo"
    local_job = "projects/local/locations/local/batchPredictionJobs/1"
    vertex_job = "projects/123/locations/us-east5/batchPredictionJobs/9"
    assert same_answerer(None, local_job, "local echo")  # written before rows said who
    assert not same_answerer(None, local_job, "vertex")
    assert same_answerer(None, vertex_job, "vertex")
    assert not same_answerer(None, local_job, who, job_answerer="local echo")  # its job says echo
    assert not same_answerer("local echo", local_job, who)


def test_result_names_a_passthrough_column_may_not_take_in_any_case(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """Red team: `outcome` hid the computed outcome in `results`; `Output` (BigQuery names ignore
    case) made every collect of paid answers fail."""
    project_dir.write("tickets.csv", "ticket_id,subject,body,outcome,Output\nT1,a,b,win,x\n")
    manifest = project_dir.root / "triage.yaml"
    text = manifest.read_text()
    for name in ("outcome", "Output", "ANSWERED_BY"):
        manifest.write_text(text.replace("passthrough: [subject]", f"passthrough: [{name}]"))
        shown = run("validate", code=1)
        assert f'passthrough column "{name}" collides with a result field' in shown


def test_a_csv_destination_whose_first_row_failed_takes_a_new_passthrough_column(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """Red team: the CSV header followed the first row, a failed one the reshape leaves alone, so
    the new column never landed and apply --wait reshaped forever."""
    project_dir.write("batchrun.yaml", "backend: local\nlocal:\n  executor: {type: echo, "
                                       "fail_ids: [T1]}\n")
    manifest = project_dir.root / "triage.yaml"
    text = manifest.read_text().replace("out/triage.jsonl", "out/triage.csv").replace(
        "max_attempts: 2", "max_attempts: 1")
    manifest.write_text(text)
    run(*WAIT, code=5)
    manifest.write_text(text.replace("passthrough: [subject]", "passthrough: [subject, body]"))
    run(*WAIT, code=5)
    header = (project_dir.root / "out" / "triage.csv").read_text().splitlines()[0]
    assert header.startswith("custom_id,subject,body,status")
    shown = run("plan")
    assert "reshape" not in shown and "0 to do" in shown


def test_switching_executors_back_and_forth_is_never_read_as_a_job_failure(
        run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """Red team: the same rows staged again by another answerer left 'no trace' (its answers did
    not count), so finished jobs were counted as job-level failures and the manifest blocked."""
    with StubServer().start() as stub:
        endpoint = f"""\
            backend: local
            quota: {{failure_backoff: 0}}
            local:
              executor: {{type: anthropic, base_url: "{stub.url}", model: claude-test}}
            """
        for _ in range(2):
            project_dir.write("batchrun.yaml", endpoint)
            run(*WAIT)
            project_dir.write("batchrun.yaml", "backend: local\nquota: {failure_backoff: 0}\n")
            run(*WAIT)
        shown = run("plan")
        assert "blocked" not in shown and "up to date" in shown
        assert "job level" not in shown


def test_a_job_labelled_with_this_id_but_staged_elsewhere_is_another_projects() -> None:
    """Red team: a project copied with its batchrun.yaml (the same id) and another staging
    failed every plan on the other's staged index; such jobs are another project's."""
    from types import SimpleNamespace

    from runner.backends.base import JobState, RemoteJob
    from runner.backends.vertex.owners import Owners

    settings = SimpleNamespace(project_label="shop-1a2b3c", default_project_id="staging-x")
    owners = Owners(SimpleNamespace(staging="gs://b/mine", settings=settings, gcs=None))

    def job(uri: str) -> RemoteJob:
        return RemoteJob(name=uri, state=JobState.RUNNING, input_uri=uri, labels={
            "batchrun-managed": "v1", "batchrun-name": "m", "batchrun-spec": "s",
            "batchrun-input": "d", "batchrun-project": "shop-1a2b3c"})

    mine, foreign = owners.split([job("gs://b/mine/shop-1a2b3c/m/inputs/d.jsonl"),
                                  job("gs://b/theirs/shop-1a2b3c/m/inputs/d.jsonl")])
    assert [j.name for j in mine] == ["gs://b/mine/shop-1a2b3c/m/inputs/d.jsonl"]
    assert [j.name for j in foreign] == ["gs://b/theirs/shop-1a2b3c/m/inputs/d.jsonl"]
