"""The plan/apply story of issue 3 on the in-memory FakeBackend: each step asserted by row counts and by
the fake's own record of what was executed."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from runner import api
from runner.backends.base import JobState
from runner.views import plan as planview
from tests.conftest import ProjectDir
from tests.fakes import FakeBackend


def load(p: ProjectDir) -> api.Project:
    return api.load_project(cwd=p.root)


def rows(plan: api.Plan, name: str = "triage") -> dict[str, int]:
    r = plan.manifest(name).rows
    return {"total": r.total, "done": r.done, "in_flight": r.in_flight, "to_do": r.to_do,
            "failed": r.failed}


def cycle(p: ProjectDir, fake: FakeBackend) -> api.Plan:
    """One apply, the jobs run, one more apply to collect; returns the plan after."""
    api.apply(load(p), backend=fake)
    fake.run_all()
    api.apply(load(p), backend=fake)
    return api.plan(load(p), backend=fake)


def test_first_apply_answers_every_row_and_second_plan_is_empty(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    first = api.plan(load(project_dir), backend=fake)
    assert rows(first) == {"total": 5, "done": 0, "in_flight": 0, "to_do": 5, "failed": 0}
    assert first.manifest("triage").actions == ["create"]
    api.apply(load(project_dir), first, backend=fake)
    assert rows(api.plan(load(project_dir), backend=fake))["in_flight"] == 5
    fake.run_all()
    collecting = api.plan(load(project_dir), backend=fake)
    assert collecting.manifest("triage").actions == ["collect"]
    assert rows(collecting)["done"] == 5  # answers waiting in the output count as done
    api.apply(load(project_dir), collecting, backend=fake)
    after = api.plan(load(project_dir), backend=fake)
    assert rows(after) == {"total": 5, "done": 5, "in_flight": 0, "to_do": 0, "failed": 0}
    assert not after.has_changes
    dest = fake.destinations[str(project_dir.root / "out/triage.jsonl")]
    assert sorted(r["custom_id"] for r in dest) == ["T1", "T2", "T3", "T4", "T5"]
    assert all(r["status"] == "succeeded" and r["subject"] for r in dest)
    assert set(fake.sent.values()) == {1}


def test_appended_rows_are_the_only_ones_sent(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    cycle(project_dir, fake)
    with (project_dir.root / "tickets.csv").open("a") as fh:
        for i in range(6, 11):
            fh.write(f"T{i},New {i},Body {i}\n")
    plan = api.plan(load(project_dir), backend=fake)
    assert rows(plan) == {"total": 10, "done": 5, "in_flight": 0, "to_do": 5, "failed": 0}
    after = cycle(project_dir, fake)
    assert rows(after)["done"] == 10
    assert sum(fake.sent.values()) == 10 and set(fake.sent.values()) == {1}


def test_an_edited_row_is_sent_again_alone(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    cycle(project_dir, fake)
    csv = project_dir.root / "tickets.csv"
    csv.write_text(csv.read_text().replace("Please add dark mode.", "Please add a dark theme."))
    plan = api.plan(load(project_dir), backend=fake)
    assert rows(plan)["to_do"] == 1
    cycle(project_dir, fake)
    assert fake.sent[("triage", "T5")] == 2
    assert sum(fake.sent.values()) == 6
    dest = {r["custom_id"]: r for r in fake.destinations[str(project_dir.root / "out/triage.jsonl")]}
    assert dest["T5"]["output"] == "Dark mode: Please add a dark theme."


def test_changed_prompt_makes_every_row_to_do_and_keeps_old_answers(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    cycle(project_dir, fake)
    old_hash = load(project_dir).manifests[0].spec_hash
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("Classify the ticket.", "Label the ticket."))
    project = load(project_dir)
    assert project.manifests[0].spec_hash != old_hash
    plan = api.plan(project, backend=fake)
    assert rows(plan) == {"total": 5, "done": 0, "in_flight": 0, "to_do": 5, "failed": 0}
    api.apply(project, plan, backend=fake)
    dest_path = str(project_dir.root / "out/triage.jsonl")
    assert {r["spec_hash"] for r in fake.destinations[dest_path]} == {old_hash}  # still there
    fake.run_all()
    api.apply(load(project_dir), backend=fake)
    assert {r["spec_hash"] for r in fake.destinations[dest_path]} == {project.manifests[0].spec_hash}


def test_failed_rows_are_retried_until_max_attempts_then_reported(project_dir: ProjectDir) -> None:
    fake = FakeBackend(fail_ids=["T2", "T4"])
    plan = cycle(project_dir, fake)  # the collecting apply already resent the 2 failed rows
    assert rows(plan) == {"total": 5, "done": 3, "in_flight": 2, "to_do": 0, "failed": 0}
    assert fake.sent[("triage", "T2")] == 1
    plan = cycle(project_dir, fake)  # second attempt fails too; max_attempts is 2
    assert rows(plan) == {"total": 5, "done": 3, "in_flight": 0, "to_do": 0, "failed": 2}
    assert not plan.has_changes
    failures = dict(plan.manifest("triage").failures)
    assert set(failures) == {"T2", "T4"}
    assert "echo was told to fail this row" in failures["T2"]
    assert fake.sent[("triage", "T2")] == 2 and fake.sent[("triage", "T1")] == 1
    dest = {r["custom_id"]: r for r in fake.destinations[str(project_dir.root / "out/triage.jsonl")]}
    assert dest["T2"]["status"] == "failed" and dest["T2"]["attempts"] == 2


def test_crash_after_staging_before_create_sends_no_row_twice(project_dir: ProjectDir) -> None:
    class CrashOnCreate(FakeBackend):
        def create_job(self, request):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt  # the process dies between staging and create

    crashing = CrashOnCreate()
    with pytest.raises(KeyboardInterrupt):
        api.apply(load(project_dir), backend=crashing)
    assert crashing.staged and not crashing.jobs
    fake = FakeBackend()
    fake.staged = crashing.staged  # the same store, seen by the next run
    cycle(project_dir, fake)
    assert sum(fake.sent.values()) == 5 and set(fake.sent.values()) == {1}


def test_second_apply_while_jobs_run_creates_nothing(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    api.apply(load(project_dir), backend=fake)
    report = api.apply(load(project_dir), backend=fake)
    assert report.created == [] and len(fake.created()) == 1


def test_quota_leaves_rows_waiting_not_failed(project_dir: ProjectDir) -> None:
    project_dir.write("batchrun.yaml", "quota: {max_concurrent_jobs: 1, max_rows_per_job: 2}\n")
    fake = FakeBackend()
    plan = api.plan(load(project_dir), backend=fake)
    assert plan.manifest("triage").actions == ["create", "wait"]
    assert plan.manifest("triage").rows.waiting == 3
    api.apply(load(project_dir), plan, backend=fake)
    assert len(fake.created()) == 1
    for _ in range(4):
        fake.run_all()
        api.apply(load(project_dir), backend=fake)
    assert rows(api.plan(load(project_dir), backend=fake))["done"] == 5
    assert set(fake.sent.values()) == {1}


def test_spec_change_while_running_replaces_the_jobs(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    api.apply(load(project_dir), backend=fake)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("max_tokens: 64", "max_tokens: 32"))
    plan = api.plan(load(project_dir), backend=fake)
    assert plan.manifest("triage").actions == ["replace"]
    assert any("may leave no output" in planview.note_text(n) for n in plan.manifest("triage").notes)
    api.apply(load(project_dir), plan, backend=fake)
    states = sorted(j.state.short for j in fake.jobs.values())
    assert states == ["cancelled", "pending"]


def test_protected_manifest_refuses_to_cancel(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    api.apply(load(project_dir), backend=fake)
    manifest = project_dir.root / "triage.yaml"
    manifest.write_text(manifest.read_text().replace("max_attempts: 2", "max_attempts: 2\n  protect: true")
                        .replace("max_tokens: 64", "max_tokens: 32"))
    with pytest.raises(api.BatchrunError if hasattr(api, "BatchrunError") else Exception,
                       match="protected"):
        api.apply(load(project_dir), backend=fake)
    assert all(j.state is JobState.PENDING for j in fake.jobs.values())


def test_internal_job_failure_waits_then_rows_are_sent_again(project_dir: ProjectDir) -> None:
    fake = FakeBackend()  # its job timestamps are in 2026-01-01, so a 10-minute hold is long over
    project_dir.write("batchrun.yaml", "quota: {internal_retry_delay: 315360000}\n")  # ten years
    api.apply(load(project_dir), backend=fake)
    (job,) = fake.jobs
    fake.run(job, JobState.FAILED)  # code 13 INTERNAL, as Vertex fails a region's first job
    plan = api.plan(load(project_dir), backend=fake)
    assert plan.manifest("triage").actions == ["collect", "wait"]
    assert "resubmitting after" in planview.note_text(plan.manifest("triage").notes[0])
    api.apply(load(project_dir), plan, backend=fake)
    assert len(fake.created()) == 1  # held: nothing resubmitted yet
    project_dir.write("batchrun.yaml", "quota: {internal_retry_delay: 600}\n")
    plan = api.plan(load(project_dir), backend=fake)
    assert plan.manifest("triage").actions == ["create"]
    cycle(project_dir, fake)
    assert rows(api.plan(load(project_dir), backend=fake))["done"] == 5


def test_deleted_result_file_is_recollected_not_paid_again(project_dir: ProjectDir,
                                                          tmp_path: Path) -> None:
    from runner.backends.local.backend import LocalBackend

    project = load(project_dir)
    local = LocalBackend(project.settings)
    api.converge(project, backend=local, poll_interval=0.1, timeout=60)
    out = project_dir.root / "out/triage.jsonl"
    out.unlink()
    plan = api.plan(load(project_dir), backend=local)
    assert plan.manifest("triage").actions == ["collect"]
    assert plan.manifest("triage").rows.to_do == 0
    api.converge(load(project_dir), backend=local, poll_interval=0.1, timeout=60)
    assert len(out.read_text().splitlines()) == 5


def test_converge_pauses_while_rows_are_held(project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    project_dir.write("batchrun.yaml", "quota: {internal_retry_delay: 315360000}\n")
    api.apply(load(project_dir), backend=fake)
    (job,) = fake.jobs
    fake.run(job, JobState.FAILED)  # INTERNAL: rows wait out the delay, nothing to do now
    with pytest.raises(api.BatchrunError, match="gave up waiting"):
        api.converge(load(project_dir), backend=fake, poll_interval=0.2, timeout=0.5)
    assert sum(1 for c, _ in fake.calls if c == "list_jobs") < 30  # planned a few times, no spin


def test_one_apply_reads_the_source_once_and_the_destination_once(project_dir: ProjectDir) -> None:
    """Issue 13: the row pass of the plan is the one apply carries out — each row rendered once,
    the destination read once, whether apply creates or collects new answers."""
    fake = FakeBackend()
    cycle(project_dir, fake)
    with (project_dir.root / "tickets.csv").open("a") as fh:
        fh.write("T6,New,Body\n")

    def one_apply() -> tuple[int, int]:
        fake.calls.clear()
        with api.Work() as work:
            project = load(project_dir)
            api.apply(project, api.plan(project, backend=fake, work=work), backend=fake,
                      work=work)
        kinds = [kind for kind, _ in fake.calls]
        return kinds.count("read_source"), kinds.count("read_destination")

    assert one_apply() == (1, 1)  # plan + create
    fake.run_all()
    assert one_apply() == (1, 1)  # plan + collect (the new answer is appended)
    assert sorted(fake.sent.values()) == [1] * 6
    dest = fake.destinations[str(project_dir.root / "out/triage.jsonl")]
    assert sorted(r["custom_id"] for r in dest) == ["T1", "T2", "T3", "T4", "T5", "T6"]
    # Each answer keeps its source row's fingerprint (through the spool, the staged index and
    # collect), so the next plan knows it without rendering.
    assert all(isinstance(r["source_fp"], str) and len(r["source_fp"]) == 24 for r in dest)


def test_one_apply_parses_each_job_output_once_and_reads_the_collected_record_twice(
        project_dir: ProjectDir) -> None:
    """Issue 25: the row pass keeps the result rows it parsed for collect (it parsed each output
    twice), and apply reads the record of collected jobs once under its lock (it read it three
    times): one read at plan, one at apply."""
    fake = FakeBackend()
    api.apply(load(project_dir), backend=fake)
    fake.run_all()
    fake.calls.clear()
    with api.Work() as work:
        project = load(project_dir)
        api.apply(project, api.plan(project, backend=fake, work=work), backend=fake, work=work)
    outputs = [name for kind, name in fake.calls if kind == "read_output"]
    assert outputs and len(outputs) == len(set(outputs)), outputs
    assert [kind for kind, _ in fake.calls].count("collected_jobs") == 2
    dest = fake.destinations[str(project_dir.root / "out/triage.jsonl")]
    assert sorted(r["custom_id"] for r in dest) == ["T1", "T2", "T3", "T4", "T5"]
    assert all(r["status"] == "succeeded" for r in dest)


def test_api_apply_of_a_plan_without_its_work_renders_again_and_refuses_a_difference(
        project_dir: ProjectDir) -> None:
    fake = FakeBackend()
    shown = api.plan(load(project_dir), backend=fake)
    with (project_dir.root / "tickets.csv").open("a") as fh:
        fh.write("T6,New,Body\n")
    with pytest.raises(api.BatchrunError, match="the rows to send changed since the plan"):
        api.apply(load(project_dir), shown, backend=fake)
    assert fake.created() == []


# --- issue 14: no litter -------------------------------------------------------------------------

def test_gc_removes_only_old_collected_jobs_and_inputs_no_kept_job_uses(
        project_dir: ProjectDir) -> None:
    from runner.applying import handson
    from runner.applying.writer import Writer

    fake = FakeBackend(fail_ids=["T2"])
    project_dir.write("batchrun.yaml", "retention: 30000\n")  # apply removes nothing yet
    cycle(project_dir, fake)  # T2 refused: a second job retries it (same spec, one row)
    api.apply(load(project_dir), backend=fake)
    (retrying,) = [j for j in fake.jobs.values() if j.state.in_flight]
    (first,) = [j for j in fake.jobs.values() if not j.state.in_flight]
    project_dir.write("batchrun.yaml", "retention: 0\n")
    project = load(project_dir)
    manifest = project.manifest("triage")
    removed = handson.gc(manifest, Writer(fake), project.settings, dry_run=True)
    assert removed == [first.name, f"mem://{first.input_digest}"]  # not the job in flight
    assert first.name in fake.jobs  # a dry run removes nothing
    assert handson.gc(manifest, Writer(fake), project.settings, dry_run=False) == removed
    assert first.name not in fake.jobs and retrying.name in fake.jobs
    fake.run_all()
    final = cycle(project_dir, fake)  # and apply itself now removes what it collected
    assert final.manifest("triage").rows.done + final.manifest("triage").rows.failed == 5
    assert ("remove_job", retrying.name) in fake.calls
    assert set(fake.sent.values()) <= {1, 2}  # T2 tried twice (max_attempts 2), nothing re-paid


def test_gc_keeps_a_failed_job_that_still_counts_toward_a_block(project_dir: ProjectDir) -> None:
    from runner.applying import handson
    from runner.applying.writer import Writer

    fake = FakeBackend()
    project = load(project_dir)
    api.apply(project, backend=fake)
    (job,) = fake.jobs
    fake.end(job, JobState.FAILED, code=13, message="INTERNAL")
    api.apply(load(project_dir), api.plan(load(project_dir), backend=fake), backend=fake)
    assert handson.gc(project.manifest("triage"), Writer(fake), project.settings, dry_run=True) == []


def test_a_destination_restored_between_plan_and_apply_gets_no_duplicate(
        project_dir: ProjectDir) -> None:
    """Red team: with the destination's record gone (a hand edit), the plan's id set was trusted
    and an answer already in the (restored) file was appended a second time."""
    import json
    import shutil
    import time

    project = load(project_dir)
    api.converge(project, poll_interval=0.1, timeout=60)
    dest = project_dir.root / "out" / "triage.jsonl"
    backup = project_dir.root / "backup.jsonl"
    shutil.copy(dest, backup)
    with (project_dir.root / "tickets.csv").open("a") as fh:
        fh.write("T6,New,Body\n")
    api.apply(load(project_dir))  # T6 is sent
    deadline = time.monotonic() + 60
    while not api.plan(load(project_dir)).manifest("triage").changes:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    dest.write_text("".join(line + "\n" for line in dest.read_text().splitlines()
                            if '"T2"' not in line))  # a hand edit: the record is forgotten
    with api.Work() as work:
        plan = api.plan(load(project_dir), work=work)
        shutil.copy(backup, dest)  # ...and undone before the apply
        api.apply(load(project_dir), plan, work=work)
    ids = [json.loads(line)["custom_id"] for line in dest.read_text().splitlines()]
    assert sorted(ids) == ["T1", "T2", "T3", "T4", "T5", "T6"]


def test_apply_wait_watches_the_jobs_not_the_rows_while_they_run(tmp_path: Path) -> None:
    """A plan per poll read every row while a job ran, and took a core from a local model
    (embeddings at 68% of direct encode): while only running jobs are left, only they are read."""
    from runner import api
    from tests import crashkit
    from tests.stub_endpoint import StubServer

    with StubServer().start() as stub:
        crashkit.make_project(tmp_path, endpoint=stub.url, rows=4)  # one job of four rows
        requests.post(f"{stub.url}/_stub/mode", json={"mode": "slow", "delay": 0.5}, timeout=5)
        plans: list[object] = []
        final = api.converge(api.load_project(cwd=tmp_path), poll_interval=0.05, timeout=60,
                             on_plan=plans.append)
    assert final.manifests[0].rows.done == 4
    assert len(plans) <= 4  # create, see it run, collect, done — not one per 50 ms for 2 s


def test_asked_again_after_another_apply_an_apply_with_prune_still_cancels_the_orphans(
        project_dir: ProjectDir) -> None:
    """Review of issue 25: when another apply sent the rows meanwhile, the new plan shown and
    approved again dropped --prune, so the removed manifest's running job was never cancelled."""
    fake = FakeBackend()
    project_dir.write("other.yaml", (project_dir.root / "triage.yaml").read_text()
                      .replace("name: triage", "name: other").replace("out/triage", "out/other"))
    api.apply(load(project_dir), backend=fake)
    (orphan,) = [j.name for j in fake.jobs.values() if j.manifest_name == "other"]
    (project_dir.root / "other.yaml").unlink()
    with (project_dir.root / "tickets.csv").open("a") as fh:
        fh.write("T6,New,Body\n")
    shown: list[api.Plan] = []

    def approve(_: api.Plan) -> None:
        if len(shown) == 1:  # a colleague's apply sends T6 between our plan and our apply
            api.apply(load(project_dir), backend=fake)

    review = api.Review(show=shown.append, approve=approve, refused=lambda _: None, again=True)
    api.apply_reviewed(load(project_dir), review, backend=fake, prune=True)
    assert len(shown) == 2 and all(p.orphans and p.orphans[0].cancel for p in shown)
    assert fake.jobs[orphan].state is JobState.CANCELLED
    staged = [e.custom_id for j in fake.jobs.values() if j.manifest_name == "triage"
              for _, e in fake.staged[j.input_digest]]
    assert sorted(staged) == ["T1", "T2", "T3", "T4", "T5", "T6"]  # T6 once: the colleague's
