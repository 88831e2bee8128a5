"""One test per Vertex behaviour of DESIGN §7, against the fake server: each converges with every row
answered, none lost and none sent twice (from the fake server's own record of executed rows)."""

from __future__ import annotations

import time

import pytest

from runner import api
from runner.views import plan as planview
from tests import crashkit
from tests.vertex_env import VertexWorld

ROWS = "".join(f'{{"id": "a{i}", "text": "row {i}"}}\n' for i in range(1, 7))


def setup(vertex: VertexWorld, *, rows_per_job: int = 100, concurrent: int = 4) -> None:
    vertex.p.write("rows.jsonl", ROWS)
    settings = (vertex.p.root / "batchrun.yaml").read_text().replace(
        "quota: {internal_retry_delay: 1}",
        f"quota: {{internal_retry_delay: 1, max_rows_per_job: {rows_per_job}, "
        f"max_concurrent_jobs: {concurrent}}}")
    vertex.p.write("batchrun.yaml", settings)
    vertex.p.write("m.yaml", crashkit.MANIFEST)


def assert_converged_once(vertex: VertexWorld) -> None:
    final = vertex.converge()
    assert final.manifest("m").rows.done == 6
    assert vertex.sent_ids() == [f"a{i}" for i in range(1, 7)]  # each row executed exactly once
    results = list(api.results(vertex.project(), "m"))
    assert len(results) == 6 and all(r["status"] == "succeeded" for r in results)


def test_first_job_in_region_fails_internal_and_is_resubmitted_after_the_delay(
        vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(first_job_internal=True)
    api.apply(vertex.project())
    vertex.settle()
    plan = api.plan(vertex.project())
    assert any("resubmitting after" in planview.note_text(n) for n in plan.manifest("m").notes)
    time.sleep(1.1)
    assert_converged_once(vertex)
    states = sorted(j["state"] for j in vertex.fake_jobs())
    assert states == ["JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"]


def test_cancelled_partner_job_leaves_no_output_and_rows_are_sent_again(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(pending_seconds=60)
    api.apply(vertex.project())
    assert api.cancel(vertex.project(), "m")
    vertex.settle()
    plan = api.plan(vertex.project())
    assert plan.manifest("m").rows.to_do == 6
    vertex.faults(pending_seconds=0)
    assert_converged_once(vertex)


def test_quota_rejected_with_429_waits_for_the_next_apply(vertex: VertexWorld) -> None:
    setup(vertex, rows_per_job=2)
    vertex.faults(max_concurrent=1, quota_mode="reject", pending_seconds=0.5)
    report = api.apply(vertex.project())
    assert len(report.created) == 1  # the second create got 429: its rows wait, nothing failed
    plan = api.plan(vertex.project())
    assert plan.manifest("m").rows.to_do == 4 and plan.manifest("m").rows.failed == 0
    assert_converged_once(vertex)


def test_quota_queued_jobs_run_in_turn(vertex: VertexWorld) -> None:
    setup(vertex, rows_per_job=2)
    vertex.faults(max_concurrent=1, quota_mode="queue", run_seconds=1)
    report = api.apply(vertex.project())
    assert len(report.created) == 3  # 6 rows split to the 2-row limit, one shard label each
    assert sorted(j["labels"]["batchrun-shard"] for j in vertex.fake_jobs()) == ["0", "1", "2"]
    assert {j["state"] for j in vertex.fake_jobs()} >= {"JOB_STATE_QUEUED"}
    assert_converged_once(vertex)


def test_results_appear_only_when_every_row_is_done(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(run_seconds=1.5)
    api.apply(vertex.project())
    plan = api.plan(vertex.project())
    assert plan.manifest("m").rows.in_flight == 6 and not plan.has_changes
    assert api.apply(vertex.project()).created == []
    assert_converged_once(vertex)


def test_rows_failing_inside_a_succeeded_job_are_retried_alone(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(fail_rows=["a2", "a5"])
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(fail_rows=[])
    final = vertex.converge()
    assert final.manifest("m").rows.done == 6
    ids = vertex.sent_ids()
    assert ids.count("a2") == 2 and ids.count("a5") == 2 and ids.count("a1") == 1


def test_ambiguous_create_is_not_repeated(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(create_errors=["500-after"])  # the job exists, but the answer is a 500
    api.apply(vertex.project())
    assert len(vertex.fake_jobs()) == 1
    vertex.faults(create_errors=["drop-after"])
    vertex.p.write("rows.jsonl", ROWS + '{"id": "a7", "text": "row 7"}\n')
    api.apply(vertex.project())
    assert len(vertex.fake_jobs()) == 2
    vertex.converge()
    assert sorted(vertex.sent_ids()) == sorted([f"a{i}" for i in range(1, 8)])


def test_transient_errors_are_retried(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(create_errors=["503", "500"], drop_connections=1)
    api.apply(vertex.project())
    assert len(vertex.fake_jobs()) == 1
    vertex.faults(malformed=1)
    assert_converged_once(vertex)


def test_truncated_output_line_fails_only_that_row(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(truncate_output=True)
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(truncate_output=False)
    final = vertex.converge()
    assert final.manifest("m").rows.done == 6
    ids = vertex.sent_ids()
    assert sorted(set(ids)) == [f"a{i}" for i in range(1, 7)] and len(ids) == 7


def test_exact_tokens_come_from_the_count_tokens_endpoint(vertex: VertexWorld) -> None:
    setup(vertex)
    approx = api.plan(vertex.project()).manifest("m").estimate.input_tokens
    exact = api.plan(vertex.project(), exact_tokens=True).manifest("m").estimate.input_tokens
    assert approx == 6 * 2  # "row N" is 5 characters: 2 tokens by the offline rule
    assert exact == 6 * 2  # the fake's word tokenizer: "row", "N"
    vertex.p.write("rows.jsonl", '{"id": "a1", "text": "supercalifragilistic"}\n')
    assert api.plan(vertex.project()).manifest("m").estimate.input_tokens == 5
    assert api.plan(vertex.project(), exact_tokens=True).manifest("m").estimate.input_tokens == 1


def test_slow_responses(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(slow_seconds=0.2)
    assert_converged_once(vertex)


def test_job_stuck_pending_stops_clearly_and_loses_nothing(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(pending_seconds=3600)
    import pytest

    with pytest.raises(api.BatchrunError, match="gave up waiting after 1s; jobs keep running"):
        api.converge(vertex.project(), poll_interval=0.2, timeout=1)
    plan = api.plan(vertex.project())
    assert plan.manifest("m").rows.in_flight == 6 and not plan.has_changes  # never resent
    vertex.faults(pending_seconds=0)
    assert_converged_once(vertex)


def test_output_table_missing_rows_are_sent_again(vertex: VertexWorld) -> None:
    setup(vertex)
    dest = (vertex.p.root / "m.yaml").read_text().replace(
        "destination: {file: out/m.jsonl}", f"destination: {{bigquery: {{table: {vertex.table('m_out')}}}}}")
    vertex.p.write("m.yaml", dest)
    vertex.faults(drop_output_rows=["a4"])
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(drop_output_rows=[])
    final = vertex.converge()
    assert final.manifest("m").rows.done == 6
    ids = vertex.sent_ids()
    # a4 was answered but its output row was missing: provably no output, so it is sent again
    assert ids.count("a4") == 2 and all(ids.count(f"a{i}") == 1 for i in (1, 2, 3, 5, 6))
    assert len(vertex.rows("m_out")) == 6


# --- issue 10: an ended job keeps what it answered; only the row's own failure uses an attempt ----

def max_attempts_1(vertex: VertexWorld) -> None:
    m = vertex.p.root / "m.yaml"
    m.write_text(m.read_text().replace("parameters: {max_tokens: 10}",
                                       "parameters: {max_tokens: 10}\n  max_attempts: 1"))


def test_internal_on_the_next_jobs_spends_no_attempt(vertex: VertexWorld) -> None:
    setup(vertex)
    max_attempts_1(vertex)
    vertex.faults(internal_jobs=2)
    assert_converged_once(vertex)
    states = sorted(j["state"] for j in vertex.fake_jobs())
    assert states == ["JOB_STATE_FAILED", "JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"]


@pytest.mark.parametrize("dest", ["file", "bigquery"])
def test_expired_job_keeps_the_rows_it_finished(vertex: VertexWorld, dest: str) -> None:
    """The fake names no outputInfo for a job cut short: the rows are found where they were asked
    to go (a Cloud Storage prefix, or a BigQuery table)."""
    setup(vertex)
    max_attempts_1(vertex)
    if dest == "bigquery":
        m = vertex.p.root / "m.yaml"
        m.write_text(m.read_text().replace(
            "destination: {file: out/m.jsonl}",
            f"destination: {{bigquery: {{table: {vertex.table('m_out')}}}}}"))
    vertex.faults(expire_after_rows=3)
    api.apply(vertex.project())
    vertex.settle()
    vertex.faults(expire_after_rows=None)
    plan = api.plan(vertex.project())
    m = plan.manifest("m")
    assert (m.rows.done, m.rows.to_do, m.rows.failed) == (3, 3, 0)
    assert vertex.fake_jobs()[0]["state"] == "JOB_STATE_EXPIRED"
    vertex.p.write("batchrun.yaml", (vertex.p.root / "batchrun.yaml").read_text().replace(
        "internal_retry_delay: 1", "internal_retry_delay: 1, failure_backoff: 0"))
    assert_converged_once(vertex)  # the three answers were kept, the rest sent once


def test_cancelled_job_keeps_its_partial_output(vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(run_seconds=60, cancelled_output=True, cancel_after_rows=2)
    api.apply(vertex.project())
    time.sleep(0.5)
    assert api.cancel(vertex.project(), "m")
    vertex.settle()
    vertex.faults(run_seconds=0)
    assert api.plan(vertex.project()).manifest("m").rows.done == 2
    assert_converged_once(vertex)


def test_cancelling_that_lasts_and_ends_succeeded_is_collected_not_resent(
        vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(run_seconds=60, cancelling_seconds=1.0, cancel_ends="JOB_STATE_SUCCEEDED")
    api.apply(vertex.project())
    time.sleep(0.3)
    assert api.cancel(vertex.project(), "m")
    plan = api.plan(vertex.project())
    assert plan.manifest("m").rows.in_flight == 6 and not plan.has_changes  # never resent
    assert_converged_once(vertex)
    assert [j["state"] for j in vertex.fake_jobs()] == ["JOB_STATE_SUCCEEDED"]


def test_cancel_of_an_ended_job_is_done(vertex: VertexWorld) -> None:
    from runner.backends.vertex.backend import VertexBackend

    setup(vertex)
    assert_converged_once(vertex)
    (job,) = vertex.fake_jobs()
    VertexBackend(vertex.project().settings).cancel_job(job["name"])  # 400 FAILED_PRECONDITION
    assert vertex.fake_jobs()[0]["state"] == "JOB_STATE_SUCCEEDED"


def test_partially_succeeded_and_per_row_infrastructure_errors(vertex: VertexWorld) -> None:
    setup(vertex)
    max_attempts_1(vertex)
    vertex.faults(partial_success=True, fail_rows=["a2"], busy_rows=["a5"])
    api.apply(vertex.project())
    vertex.settle()
    assert vertex.fake_jobs()[0]["state"] == "JOB_STATE_PARTIALLY_SUCCEEDED"
    m = api.plan(vertex.project()).manifest("m")
    # a2 was refused by the model: its one attempt is spent; a5 met a 429: it is to do again
    assert (m.rows.done, m.rows.failed, m.rows.to_do) == (4, 1, 1)
    vertex.faults(busy_rows=[])
    final = vertex.converge()
    assert (final.manifest("m").rows.done, final.manifest("m").rows.failed) == (5, 1)
    ids = vertex.sent_ids()
    assert ids.count("a5") == 2 and ids.count("a2") == 1


# --- issue 14: regions, datasets in the wrong place, a refused job filter --------------------------

def test_a_dataset_in_another_location_is_refused_at_plan(vertex: VertexWorld) -> None:
    from google.cloud import bigquery

    setup(vertex)
    project = vertex.table("x").split(".")[0]
    dataset = f"{project}.{vertex.dataset}_us"
    elsewhere = bigquery.Dataset(dataset)
    elsewhere.location = "US"
    vertex.bq.create_dataset(elsewhere)
    m = vertex.p.root / "m.yaml"
    m.write_text(m.read_text().replace("destination: {file: out/m.jsonl}",
                                       f"destination: {{bigquery: {{table: {dataset}.m_out}}}}"))
    with pytest.raises(api.BatchrunError) as info:
        api.plan(vertex.project())
    (problem,) = info.value.diagnostics
    assert problem.summary == (f"m: dataset `{dataset}` is in US, the job runs in us-east5: "
                               "Vertex reads and writes BigQuery only in the job's region")
    assert problem.path == "spec.region" and problem.hint is not None
    assert vertex.fake_jobs() == []  # refused before anything was staged or created


def test_a_refused_job_filter_still_lists_every_job_and_sends_no_row_twice(
        vertex: VertexWorld) -> None:
    setup(vertex)
    vertex.faults(run_seconds=60)
    api.apply(vertex.project())  # one job, running
    vertex.faults(refuse_label_filter=True)  # as if the real parser refused "batchrun-managed"
    backend = api.open_backend(vertex.project())
    plan = api.plan(vertex.project(), backend=backend)
    assert plan.manifest("m").rows.in_flight == 6  # the running job was found without the filter
    assert not plan.has_changes
    assert any("refused the job filter" in n for n in backend.notices)  # type: ignore[attr-defined]
    api.apply(vertex.project(), backend=backend)
    assert len(vertex.fake_jobs()) == 1  # no duplicate job
    vertex.faults(run_seconds=0)
    assert_converged_once(vertex)


def test_gc_removes_batchrun_leftovers_and_nothing_else(vertex: VertexWorld) -> None:
    """Retention 0: after the rows are answered, apply (and `gc`) remove the staged input, the
    output objects, the batchrun_out_ table and the job record; a stranger's object stays."""
    setup(vertex)
    m = vertex.p.root / "m.yaml"
    m.write_text(m.read_text().replace(
        "destination: {file: out/m.jsonl}",
        f"destination: {{bigquery: {{table: {vertex.table('m_out')}}}}}"))
    folder = f"staging/{vertex.project().settings.project_label}/m/"  # this project's files
    stranger = vertex.gcs.bucket(vertex.bucket).blob(folder + "inputs/notes.txt")
    stranger.upload_from_string("mine")
    assert_converged_once(vertex)
    before = {j["name"] for j in vertex.fake_jobs()}
    leftovers = sorted(b.name for b in vertex.gcs.list_blobs(vertex.bucket, prefix=folder))
    assert any(n.endswith(".index.jsonl") for n in leftovers)
    out_tables = [t.table_id for t in vertex.bq.list_tables(vertex.dataset)
                  if t.table_id.startswith("batchrun_out_")]
    assert out_tables
    vertex.p.write("batchrun.yaml", (vertex.p.root / "batchrun.yaml").read_text()
                   + "retention: 0\n")
    listed = api.gc(vertex.project(), dry_run=True)["m"]
    assert any(x.endswith(".index.jsonl") for x in listed) and set(before) <= set(listed)
    assert {j["name"] for j in vertex.fake_jobs()} == before  # a dry run removes nothing
    assert api.gc(vertex.project())["m"] == listed
    assert vertex.fake_jobs() == []
    remaining = sorted(b.name for b in vertex.gcs.list_blobs(vertex.bucket, prefix="staging/")
                       if not b.name.startswith("staging/_collected/"))  # the destination's record
    assert remaining == [folder + "inputs/notes.txt"]  # not batchrun's: kept
    tables = {t.table_id for t in vertex.bq.list_tables(vertex.dataset)}
    assert "m_out" in tables and not tables & set(out_tables)
    results = list(api.results(vertex.project(), "m"))
    assert len(results) == 6  # the answers are in the destination, untouched
    assert not api.plan(vertex.project()).has_changes  # and nothing is to be sent again
