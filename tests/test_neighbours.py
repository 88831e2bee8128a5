"""Issue 21: two batchrun projects in one GCP project and region with one manifest name — with
their own staging prefixes, or one shared — each apply leaves the other's jobs alone, each
destination holds only its own rows, both plans stay green, and the job quota counts both. Jobs
made before projects had ids are adopted by the project whose staging holds their input.
Counted at the fake Vertex server (cancels, rows executed)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import requests
from click.testing import CliRunner

from runner import api, identity
from runner.backends import staging as stage_files
from runner.backends.vertex import jobs as vjobs
from runner.cli import commands as cli
from runner.ledger.rowpass import index_entry, rendered_rows
from runner.views import text as display
from tests.conftest import ProjectDir
from tests.vertex_env import PROJECT, VertexWorld

NAME = "review-sentiment"  # what `batchrun init` names every project's example
MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: review-sentiment}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 16}
  source: {file: data/reviews.csv, id: review_id}
  prompt: {user: "{{ product }}: {{ text }}"}
  passthrough: [product]
  destination: {bigquery: {table: TABLE}}
"""


def reviews(prefix: str, product: str) -> str:
    return "review_id,product,text\n" + "".join(
        f"{prefix}{i},{product},review {prefix}{i}\n" for i in range(1, 4))


def settings(staging: str, rows_per_job: int, project_id: str | None = None) -> str:
    return ((f"id: {project_id}\n" if project_id else "") + f"""\
backend: vertex
project: {PROJECT}
region: us-east5
staging: {staging}
quota: {{max_concurrent_jobs: 2, max_rows_per_job: {rows_per_job}, internal_retry_delay: 1}}
""")


def make(root: Path, vertex: VertexWorld, *, staging: str, prefix: str, product: str,
         rows_per_job: int, project_id: str | None = None) -> None:
    p = ProjectDir(root)
    p.write("batchrun.yaml", settings(staging, rows_per_job, project_id))
    p.write("data/reviews.csv", reviews(prefix, product))
    p.write(f"{NAME}.yaml", MANIFEST.replace("TABLE", vertex.table(f"sentiment_{prefix}")))


def init(folder: Path) -> str | None:
    """A project as `batchrun init` starts one; its id, if init gave it one."""
    result = CliRunner().invoke(cli.main, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    found = re.search(r"^id: (\S+)", (folder / "batchrun.yaml").read_text(), re.MULTILINE)
    return found.group(1) if found else None


def cancels(vertex: VertexWorld) -> list[str]:
    answer = requests.get(f"{vertex.vertex}/_fake/requests", timeout=10).json()
    return list(answer["cancels"])


def plan_exit(root: Path) -> int:
    result = CliRunner().invoke(cli.main, ["--config", str(root / "batchrun.yaml"), "plan",
                                           "--detailed-exitcode"])
    assert result.exit_code in (0, 3), result.output + result.stderr
    return result.exit_code


def converge(root: Path) -> api.Plan:
    return api.converge(api.load_project(cwd=root), poll_interval=0.2, timeout=90)


def neighbours(vertex: VertexWorld, a: Path, b: Path) -> None:
    """A's job runs; B plans and applies with the same manifest name: A's job is left alone and
    counted against the quota; then both converge, each with its own rows only."""
    vertex.faults(pending_seconds=3600)  # every job waits until the test lets it run
    api.apply(api.load_project(cwd=a))
    [a_job] = [j["name"] for j in vertex.fake_jobs()]

    plan = api.plan(api.load_project(cwd=b))
    b_plan = plan.manifest(NAME)
    assert [c.action.value for c in b_plan.changes] == ["create"], b_plan.changes
    # Quota: 2 jobs at once; A's running job takes one, so B creates one of its three now.
    assert b_plan.changes[0].shards == 1 and b_plan.rows.waiting == 2
    assert not plan.orphans
    api.apply(api.load_project(cwd=b))
    assert cancels(vertex) == []
    assert len(vertex.fake_jobs()) == 2
    a_plan = api.plan(api.load_project(cwd=a)).manifest(NAME)
    assert a_plan.rows.in_flight == 3 and not a_plan.changes
    assert plan_exit(a) == 0 and plan_exit(b) == 3  # B still has rows waiting for a slot

    vertex.faults(pending_seconds=0)
    assert converge(a).manifest(NAME).rows.done == 3
    assert converge(b).manifest(NAME).rows.done == 3
    assert cancels(vertex) == []
    assert a_job in {j["name"] for j in vertex.fake_jobs()}
    a_rows, b_rows = vertex.rows("sentiment_a"), vertex.rows("sentiment_b")
    assert sorted(a_rows) == ["a1", "a2", "a3"] and sorted(b_rows) == ["b1", "b2", "b3"]
    assert {r["product"] for r in a_rows.values()} == {"Kettle"}
    assert {r["product"] for r in b_rows.values()} == {"Toaster"}
    assert vertex.sent_ids() == ["a1", "a2", "a3", "b1", "b2", "b3"]  # each sent once
    assert plan_exit(a) == 0 and plan_exit(b) == 0


def test_two_projects_with_their_own_staging_leave_each_other_alone(
        vertex: VertexWorld, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """As the issue found them: two projects made before ids, each with its own staging prefix."""
    a, b = vertex.p.root, tmp_path_factory.mktemp("b")
    make(a, vertex, staging=f"gs://{vertex.bucket}/team-a", prefix="a", product="Kettle",
         rows_per_job=100)
    make(b, vertex, staging=f"gs://{vertex.bucket}/team-b", prefix="b", product="Toaster",
         rows_per_job=1)
    neighbours(vertex, a, b)


def test_two_projects_from_init_sharing_a_staging_prefix_leave_each_other_alone(
        vertex: VertexWorld, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path_factory.mktemp("c") / "proj", tmp_path_factory.mktemp("d") / "proj"
    staging = f"gs://{vertex.bucket}/shared"
    ids = []
    for root, prefix, product, per_job in ((a, "a", "Kettle", 100), (b, "b", "Toaster", 1)):
        project_id = init(root)
        ids.append(project_id)
        (root / "batchrun.yaml").write_text(settings(staging, per_job, project_id)
                                            + "manifests: [manifests]\n")
        (root / "manifests" / "data" / "reviews.csv").write_text(reviews(prefix, product))
        example = root / "manifests" / f"{NAME}.yaml"
        text = example.read_text()  # init's destination block (a file, and gs:// for vertex) goes
        example.write_text(text[:text.index("  destination:")] + "  destination:\n    bigquery: "
                           f"{{table: {vertex.table(f'sentiment_{prefix}')}}}\n")
    neighbours(vertex, a, b)
    assert ids[0] and ids[1] and ids[0] != ids[1]  # init gives each project its own id
    # Each project's files live under its own id: neither reads the other's index.
    names = {blob.name for blob in vertex.gcs.list_blobs(vertex.bucket, prefix="shared/")}
    for project_id in ids:
        assert any(n.startswith(f"shared/{project_id}/{NAME}/inputs/") for n in names)
    assert not any(n.startswith(f"shared/{NAME}/") for n in names)


def old_release_job(vertex: VertexWorld) -> str:
    """A job as the release before project ids made it: staged at {staging}/{manifest}/inputs/,
    labelled without batchrun-project."""
    project = vertex.project()
    backend = api.open_backend(project)
    manifest = project.manifest(NAME)
    rows = [(r.line, index_entry(manifest, r))
            for r in rendered_rows(manifest, backend, project.settings)]
    staging = f"gs://{vertex.bucket}/staging"
    with tempfile.TemporaryDirectory() as tmp:
        inp, idx = Path(tmp) / "in.jsonl", Path(tmp) / "index.jsonl"
        digest, _, _ = stage_files.write_staged(rows, inp, idx)
        base = f"{NAME}/inputs/{digest}"
        vertex.gcs.bucket(vertex.bucket).blob(f"staging/{base}.index.jsonl").upload_from_filename(idx)
        vertex.gcs.bucket(vertex.bucket).blob(f"staging/{base}.jsonl").upload_from_filename(inp)
    labels = identity.job_labels(manifest, input_digest=digest, shard=0)
    assert "batchrun-project" not in labels
    body = vjobs.create_body(display_name=identity.display_name(manifest, 0),
                             model=manifest.model.resource,
                             input_uri=f"{staging}/{base}.jsonl",
                             output_uri=f"{staging}/{NAME}/outputs/{digest}/0123abcd/",
                             labels=labels)
    return str(backend.client("us-east5").create(body)["name"])  # type: ignore[attr-defined]


def test_a_job_made_before_project_ids_is_collected_once(vertex: VertexWorld,
                                                         tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    a = vertex.p.root
    make(a, vertex, staging=f"gs://{vertex.bucket}/staging", prefix="a", product="Kettle",
         rows_per_job=100)
    vertex.faults(pending_seconds=3600)
    old = old_release_job(vertex)
    # A neighbour with its own staging does not take it: it is counted for the quota only.
    b = tmp_path_factory.mktemp("b")
    make(b, vertex, staging=f"gs://{vertex.bucket}/team-b", prefix="b", product="Toaster",
         rows_per_job=1)
    b_plan = api.plan(api.load_project(cwd=b)).manifest(NAME)
    assert [c.action.value for c in b_plan.changes] == ["create"] and b_plan.changes[0].shards == 1
    plan = api.plan(vertex.project()).manifest(NAME)
    assert plan.rows.in_flight == 3 and plan.rows.to_do == 0 and not plan.changes
    vertex.faults(pending_seconds=0)
    final = converge(a)
    assert final.manifest(NAME).rows.done == 3
    assert vertex.sent_ids() == ["a1", "a2", "a3"]  # nothing re-sent
    assert {r["job"] for r in vertex.rows("sentiment_a").values()} == {old}
    assert not api.plan(vertex.project()).has_changes
    assert cancels(vertex) == []


def test_doctor_names_the_neighbours_and_what_they_share(vertex: VertexWorld,
                                                         tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = vertex.p.root, tmp_path_factory.mktemp("b")
    staging = f"gs://{vertex.bucket}/staging"
    make(a, vertex, staging=staging, prefix="a", product="Kettle", rows_per_job=100,
         project_id="team-a-0a0a0a")
    make(b, vertex, staging=staging, prefix="b", product="Toaster", rows_per_job=100,
         project_id="team-b-0b0b0b")
    vertex.faults(pending_seconds=3600)
    api.apply(api.load_project(cwd=b))
    shown = display.findings_text(api.doctor(vertex.project()))
    assert "other batchrun projects in us-east5: team-b-0b0b0b (1 job)" in shown
    assert "! team-b-0b0b0b shares this staging prefix" in shown
    assert f"! team-b-0b0b0b has a manifest named {NAME} too" in shown
    assert "project id: team-a-0a0a0a" in shown
    # Without an id, doctor says which one is used and recommends writing one.
    (a / "batchrun.yaml").write_text(settings(staging, 100))
    shown = display.findings_text(api.doctor(vertex.project()))
    assert "! project id: batchrun.yaml has none" in shown
    assert re.search(r"fix: write `id: [a-z0-9-]+-[0-9a-f]{6}` into", shown), shown


def test_plan_says_once_that_batchrun_yaml_should_have_an_id(vertex: VertexWorld, run) -> None:  # type: ignore[no-untyped-def]
    make(vertex.p.root, vertex, staging=f"gs://{vertex.bucket}/staging", prefix="a",
         product="Kettle", rows_per_job=100)
    out = run("plan")
    assert out.count("note: project id: batchrun.yaml has none") == 1
    assert re.search(r"write `id: [a-z0-9-]+-[0-9a-f]{6}` into batchrun.yaml", out), out
    (vertex.p.root / "batchrun.yaml").write_text(
        settings(f"gs://{vertex.bucket}/staging", 100, "team-a-0a0a0a"))
    assert "note:" not in run("plan")


# --- without emulators ----------------------------------------------------------------------------

def test_init_gives_each_project_its_own_valid_id(tmp_path: Path) -> None:
    first, second = init(tmp_path / "a" / "My Project!"), init(tmp_path / "b" / "My Project!")
    assert first and second and first != second
    assert re.fullmatch(r"my-project-[0-9a-f]{6}", first)
    assert api.load_project(cwd=tmp_path / "a" / "My Project!").settings.project_id == first


def test_an_id_that_cannot_be_a_label_value_is_refused(project_dir: ProjectDir) -> None:
    import pytest

    from runner.errors import ConfigError

    project_dir.write("batchrun.yaml", "id: Team A\nbackend: local\n")
    with pytest.raises(ConfigError) as caught:
        api.load_project(cwd=project_dir.root)
    shown = display.diagnostics_text(caught.value.diagnostics)
    assert '"Team A" is not in the expected form' in shown and "lowercase letters" in shown


def test_local_jobs_carry_the_project_id_and_another_projects_are_not_listed(
        project_dir: ProjectDir) -> None:
    import orjson

    project_dir.write("batchrun.yaml", "id: mine-0a0a0a\nbackend: local\n")
    project = api.load_project(cwd=project_dir.root)
    assert api.converge(project, poll_interval=0.05, timeout=60).manifest("triage").rows.done == 5
    backend = api.open_backend(project)
    [job] = backend.list_jobs()
    assert job.project == "mine-0a0a0a"
    record = project_dir.root / ".batchrun" / "jobs" / job.name.rsplit("/", 1)[-1] / "job.json"
    data = orjson.loads(record.read_bytes())
    data["labels"]["batchrun-project"] = "theirs-0b0b0b"
    record.write_bytes(orjson.dumps(data))
    assert backend.list_jobs() == [] and [j.name for j in backend.foreign_jobs()] == [job.name]
    del data["labels"]["batchrun-project"]  # made before ids, in this project's own .batchrun/
    record.write_bytes(orjson.dumps(data))
    assert [j.name for j in backend.list_jobs()] == [job.name]
