"""Quota where Vertex keeps it (issue 23): Claude's batch page allows 4 concurrent batch requests per
project, so Claude jobs in every region count against one pool; open models keep their own pool per
region; a family's pool is a setting (quota.families)."""

from __future__ import annotations

from runner import api
from runner.plan import Action
from tests.vertex_env import VertexWorld

ROWS = "".join(f'{{"id": "a{i}", "text": "row {i}"}}\n' for i in range(1, 4))


def manifest(name: str, model: str, region: str) -> str:
    return f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: {name}}}
        spec:
          model: {model}
          region: {region}
          parameters: {{max_tokens: 10}}
          source: {{file: rows.jsonl, id: id}}
          prompt: {{user: "{{{{ text }}}}"}}
          destination: {{file: out/{name}.jsonl}}
        """


def setup(vertex: VertexWorld, quota: str) -> None:
    vertex.p.write("rows.jsonl", ROWS)
    settings = (vertex.p.root / "batchrun.yaml").read_text().replace(
        "quota: {internal_retry_delay: 1}", f"quota: {{internal_retry_delay: 1, {quota}}}")
    vertex.p.write("batchrun.yaml", settings)
    vertex.p.write("east.yaml", manifest("east", "anthropic/claude-haiku-4-5@20251001",
                                         "us-east5"))
    vertex.p.write("west.yaml", manifest("west", "anthropic/claude-haiku-4-5@20251001",
                                         "europe-west1"))
    vertex.p.write("llama.yaml", manifest("llama", "meta/llama-4-maverick-17b-128e-instruct-maas",
                                          "us-east5"))


def creates(plan: api.Plan, name: str) -> bool:
    return any(c.action is Action.CREATE for c in plan.manifest(name).changes)


def test_claude_jobs_in_two_regions_count_against_one_project_pool(vertex: VertexWorld) -> None:
    setup(vertex, "max_concurrent_jobs: 1")
    vertex.faults(pending_seconds=60)  # the first job stays in flight
    plan = api.plan(vertex.project())
    assert creates(plan, "east") != creates(plan, "west")  # one Claude slot for the project
    waiting = "west" if creates(plan, "east") else "east"
    assert plan.manifest(waiting).rows.waiting == 3
    assert creates(plan, "llama")  # open models are not in Claude's pool
    report = api.apply(vertex.project())
    assert len(report.created) == 2
    regions = sorted(j["name"].split("/")[3] for j in vertex.fake_jobs())
    assert regions == ["us-east5", "us-east5"] or sorted(regions) == ["europe-west1", "us-east5"]
    again = api.plan(vertex.project())  # a running Claude job in one region holds the other back
    assert not creates(again, waiting) and again.manifest(waiting).rows.waiting == 3


def test_a_family_counted_per_region_by_setting(vertex: VertexWorld) -> None:
    setup(vertex, "max_concurrent_jobs: 1, families: {claude: {counted_per: region}}")
    vertex.faults(pending_seconds=60)
    plan = api.plan(vertex.project())
    assert creates(plan, "east") and creates(plan, "west") and creates(plan, "llama")


def test_a_family_limit_by_setting(vertex: VertexWorld) -> None:
    setup(vertex, "families: {claude: {max_concurrent_jobs: 1}}")
    vertex.faults(pending_seconds=60)
    plan = api.plan(vertex.project())
    assert creates(plan, "east") != creates(plan, "west") and creates(plan, "llama")
