"""Quota where Vertex keeps it (issue 23): Claude's batch page allows 4 concurrent batch requests per
project, so Claude jobs in every region count against one pool; open models keep their own pool per
region; a family's pool is a setting (quota.families)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import api
from runner.planning.plan import Action
from runner.spec import Family, FamilyQuota, Quota
from tests.conftest import ProjectDir
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


def test_request_size_limit_is_the_familys_documented_one(tmp_path: Path) -> None:
    from runner.errors import RenderError
    from tests.test_render import manifest as seed

    assert Quota().request_bytes(Family.CLAUDE) == 30_000_000  # Claude on Vertex: 30 MB
    assert Quota().request_bytes(Family.OPENAI_CHAT) == 1_000_000
    assert Quota(max_request_bytes=2000).request_bytes(Family.CLAUDE) == 2000
    assert Quota(max_request_bytes=2000, families={"claude": FamilyQuota(
        max_request_bytes=5000)}).request_bytes(Family.CLAUDE) == 5000
    p = ProjectDir(tmp_path)
    p.write("rows.jsonl", json.dumps({"id": "big", "text": "x" * 2_000_000}) + "\n")
    p.write("seed.yaml", seed("anthropic/claude-haiku-4-5@20251001", '{user: "{{ text }}"}',
                              "parameters: {max_tokens: 5}"))
    (line,) = api.render(api.load_project(cwd=tmp_path), "seed")  # 2 MB: well within 30 MB
    assert len(line) > 2_000_000
    p.write("seed.yaml", seed("meta/llama-4-maverick-17b-128e-instruct-maas",
                              '{user: "{{ text }}"}'))
    # Refused as it is read (a row longer than a request may be is never held whole).
    with pytest.raises(RenderError, match="more than a request may be \\(1,000,000"):
        list(api.render(api.load_project(cwd=tmp_path), "seed"))
