"""Identity: the spec hash is pinned (changing it re-runs every user's rows) and stable across YAML
formatting, key order and the things that are not part of a row's answer."""

from __future__ import annotations

import re
from pathlib import Path

from runner import api, identity
from tests.conftest import TRIAGE, ProjectDir

PINNED_TRIAGE_HASH = "81c99a440bdebce506961e05c925d03e"  # issue 14: the model is now claude-haiku-4-5


def spec_hash(p: ProjectDir, text: str) -> str:
    p.write("triage.yaml", text)
    return api.load_project(cwd=p.root).manifests[0].spec_hash


def test_spec_hash_is_pinned(project_dir: ProjectDir) -> None:
    assert spec_hash(project_dir, TRIAGE) == PINNED_TRIAGE_HASH


def test_spec_hash_ignores_formatting_order_labels_and_attempts(project_dir: ProjectDir) -> None:
    base = spec_hash(project_dir, TRIAGE.replace("{max_tokens: 64}", "{max_tokens: 64, temperature: 0}"))
    reformatted = TRIAGE.replace("parameters: {max_tokens: 64}",
                                 "parameters:\n    temperature: 0.0\n    max_tokens: 64")
    assert spec_hash(project_dir, reformatted) == base
    base = spec_hash(project_dir, TRIAGE)
    relabelled = TRIAGE.replace("name: triage", "name: triage\n  labels: {team: x}").replace(
        "max_attempts: 2", "max_attempts: 5").replace("passthrough: [subject]", "passthrough: []")
    assert spec_hash(project_dir, relabelled) == base
    reordered = TRIAGE.replace('    system: Classify the ticket.\n    user: "{{ subject }}: {{ body }}"',
                               '    user: "{{ subject }}: {{ body }}"\n    system: Classify the ticket.')
    assert spec_hash(project_dir, reordered) == base


def test_spec_hash_changes_with_what_decides_an_answer(project_dir: ProjectDir) -> None:
    base = spec_hash(project_dir, TRIAGE)
    for old, new in [("max_tokens: 64", "max_tokens: 65"), ("Classify", "Sort"),
                     ("claude-haiku-4-5@20251001", "claude-sonnet-4@20250514"),
                     ("out/triage.jsonl", "out/other.jsonl")]:
        assert spec_hash(project_dir, TRIAGE.replace(old, new)) != base, old


def test_spec_hash_does_not_depend_on_the_checkout_location(tmp_path: Path) -> None:
    hashes = set()
    for folder in ("a", "b/c"):
        p = ProjectDir(tmp_path / folder)
        p.write("batchrun.yaml", "backend: local\n")
        p.write("tickets.csv", "ticket_id,subject,body\n1,s,b\n")
        hashes.add(spec_hash(p, TRIAGE))
    assert len(hashes) == 1


def test_labels_and_label_rules(project_dir: ProjectDir) -> None:
    m = api.load_project(cwd=project_dir.root).manifests[0]
    labels = identity.job_labels(m, input_digest="ab" * 16, shard=0)
    assert labels == {"batchrun-managed": "v1", "batchrun-name": "triage",
                      "batchrun-spec": m.spec_hash, "batchrun-input": "ab" * 16,
                      "batchrun-shard": "0", "batchrun-parts": identity.spec_parts(m)}
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}", labels["batchrun-parts"])
    assert all(identity.label_value_problem(v) is None for v in labels.values())
    assert identity.label_key_problem("équipe") is None  # international lowercase is allowed
    assert identity.label_key_problem("Team") is not None
    assert identity.label_key_problem("batchrun-x") is not None
    assert identity.label_value_problem("x" * 64) is not None


def test_request_hash_is_of_the_exact_bytes() -> None:
    assert identity.request_hash(b"{}") == identity.request_hash(b"{}")
    assert identity.request_hash(b"{}") != identity.request_hash(b"{ }")


def test_the_hot_path_request_hash_is_the_identity_one(project_dir: ProjectDir) -> None:
    from runner.rendering.row import Renderer
    from runner.rows.records import SourceRow

    m = api.load_project(cwd=project_dir.root).manifests[0]
    row = Renderer(m, max_request_bytes=10**6).render(SourceRow(1, {"ticket_id": "T9",
                                                                     "subject": "s", "body": "b"}))
    assert row.request_hash == identity.request_hash(row.line)
