"""A row has one id (issue 21): duplicates are told on the custom_id that is sent, and a hashed id
can never equal a raw one, since with `hash: true` a raw id of the hashed shape is hashed too."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner import api
from runner.rendering.row import Renderer
from runner.rows.records import SourceRow
from tests.conftest import ProjectDir
from tests.fakes import FakeBackend

HASHED = re.compile(r"h[0-9a-f]{40}").fullmatch


def hashed(text: str) -> str:
    """The id `hash: true` sends for an id that does not fit (the rendering's rule, written out)."""
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:40]


SHAPED = hashed("a b")  # a raw id that looks like the hash of another row's raw id


def jsonl_manifest(project_dir: ProjectDir, rows: list[dict[str, object]], *,
                   id_spec: str = "{column: id, hash: true}", fmt: str = "") -> None:
    project_dir.write("rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    prompt = "" if fmt else 'prompt: {user: "{{ text }}"}'
    project_dir.write("triage.yaml", f"""\
        apiVersion: batchrun/v1
        kind: BatchJob
        metadata: {{name: triage}}
        spec:
          model: anthropic/claude-haiku-4-5@20251001
          parameters: {{max_tokens: 16}}
          source: {{file: rows.jsonl, id: {id_spec}{fmt}}}
          {prompt}
          destination: {{file: out/triage.jsonl}}
        """)


def renderer(project_dir: ProjectDir, id_hash: bool) -> Renderer:
    jsonl_manifest(project_dir, [{"id": "x", "text": "t"}],
                   id_spec="{column: id, hash: true}" if id_hash else "id")
    manifest = api.load_project(cwd=project_dir.root).manifest("triage")
    return Renderer(manifest, max_request_bytes=1_000_000, max_id_chars=64)


# --- the hashed shape is always a hash ----------------------------------------------------------

HEX40 = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
ORDINARY = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
                   min_size=1, max_size=64).filter(lambda s: not HASHED(s))


def test_a_raw_id_of_the_hashed_shape_is_hashed_and_an_ordinary_id_kept(
        project_dir: ProjectDir) -> None:
    with_hash, without = renderer(project_dir, True), renderer(project_dir, False)

    @given(HEX40)
    def shaped(digits: str) -> None:
        raw = "h" + digits
        sent = with_hash.custom_id(SourceRow(1, {"id": raw}))
        assert sent == hashed(raw) and sent != raw  # a hash of it: it cannot be another row's hash
        assert without.custom_id(SourceRow(1, {"id": raw})) == raw  # without hash: true, as it is

    @given(ORDINARY)
    def ordinary(raw: str) -> None:
        # Upgrading re-keys no ordinary row (its answers are kept, nothing is paid again).
        assert with_hash.custom_id(SourceRow(1, {"id": raw})) == raw

    shaped()
    ordinary()
    for near in ("h" + "0" * 39, "h" + "0" * 41, "H" + "0" * 40, "h" + "A" * 40, "g" + "0" * 40):
        assert with_hash.custom_id(SourceRow(1, {"id": near})) == near


# --- a file source ------------------------------------------------------------------------------

def test_a_file_row_whose_raw_id_is_another_rows_hash_is_sent_under_its_own_id(
        project_dir: ProjectDir) -> None:
    """The report's data: a file source refused it as duplicate ids; each row now has its own."""
    jsonl_manifest(project_dir, [{"id": SHAPED, "text": "first"}, {"id": "a b", "text": "second"}])
    fake = FakeBackend()
    api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    fake.run_all()
    api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    assert sorted(fake.sent.values()) == [1, 1]
    assert {cid for _, cid in fake.sent} == {hashed(SHAPED), SHAPED}  # "a b" sends SHAPED
    rows = fake.destinations[str(project_dir.root / "out/triage.jsonl")]
    assert sorted(r["id"] for r in rows) == sorted([SHAPED, "a b"])
    assert not api.plan(api.load_project(cwd=project_dir.root), backend=fake).has_changes


def test_two_rows_that_send_one_custom_id_are_refused_naming_both(
        project_dir: ProjectDir, run) -> None:  # type: ignore[no-untyped-def]
    """5 and "5" are two raw ids and one custom_id: refused at plan, both rows named."""
    jsonl_manifest(project_dir, [{"id": "5", "text": "a"}, {"id": "T", "text": "b"},
                                 {"id": 5, "text": "c"}], id_spec="id")
    out = run("plan", code=1)
    assert "row 3 (id 5): sends custom_id '5', as row 1 (id '5') does" in out
    fake = FakeBackend()
    with pytest.raises(api.BatchrunError):
        api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    assert not fake.jobs and not fake.sent


# --- ready-made request rows ---------------------------------------------------------------------

def request_row(custom_id: str, other: str, text: str) -> dict[str, object]:
    return {"custom_id": custom_id, "other": other, "request": {
        "messages": [{"role": "user", "content": text}],
        "anthropic_version": "vertex-2023-10-16", "max_tokens": 5}}


def test_request_rows_send_the_id_column_as_their_custom_id(project_dir: ProjectDir) -> None:
    """`format: requests` with `id: other`: the line used to carry the row's own custom_id, so two
    rows with one custom_id were both sent under it, as two ids in batchrun's index."""
    jsonl_manifest(project_dir, [request_row("x", "a", "hi"), request_row("x", "b", "ho")],
                   id_spec="other", fmt=", format: requests")
    lines = [json.loads(line) for line in api.render(api.load_project(cwd=project_dir.root),
                                                      "triage")]
    assert [line["custom_id"] for line in lines] == ["a", "b"]
    assert [line["other"] for line in lines] == ["a", "b"]  # the row's other fields as they were


def test_request_rows_with_one_custom_id_are_refused(project_dir: ProjectDir) -> None:
    jsonl_manifest(project_dir, [request_row("x", "a", "hi"), request_row("x", "b", "ho")],
                   id_spec="custom_id", fmt=", format: requests")
    with pytest.raises(api.BatchrunError) as info:
        api.plan(api.load_project(cwd=project_dir.root), backend=FakeBackend())
    assert "row 2 (id 'x'): duplicate id, first seen at row 1" in str(info.value)


def test_a_request_row_with_a_hashed_id_sends_the_hash(project_dir: ProjectDir) -> None:
    jsonl_manifest(project_dir, [request_row("x", "a b", "hi")],
                   id_spec="{column: other, hash: true}", fmt=", format: requests")
    fake = FakeBackend()
    api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    (staged,) = fake.staged.values()
    ((line, entry),) = staged
    assert json.loads(line)["custom_id"] == entry.custom_id == hashed("a b")
    fake.run_all()
    api.apply(api.load_project(cwd=project_dir.root), backend=fake)
    (row,) = fake.destinations[str(project_dir.root / "out/triage.jsonl")]
    assert (row["status"], row["other"]) == ("succeeded", "a b")
