"""Property-based tests (hypothesis) of the reconcile and merge rules and of hashing stability."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runner import identity
from runner.answers.collect import FAILED, SUCCEEDED, fold, merge
from runner.ledger.rules import RowClass, RowFacts, classify

facts = st.builds(RowFacts, answered=st.booleans(), pending_success=st.booleans(),
                  in_flight=st.booleans(), failures=st.integers(0, 10),
                  max_attempts=st.integers(1, 10))


@given(facts)
def test_a_row_is_sent_only_when_nothing_answers_or_carries_it(f: RowFacts) -> None:
    kind = classify(f)
    if kind is RowClass.TO_DO:
        assert not (f.answered or f.pending_success or f.in_flight)
        assert f.failures < f.max_attempts
    if f.answered or f.pending_success:
        assert kind is RowClass.DONE


results = st.lists(st.tuples(st.sampled_from([SUCCEEDED, FAILED]), st.sampled_from(["S", "OLD"]),
                             st.sampled_from(["R", "R2"])), min_size=1, max_size=8)


def as_rows(items: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [{"custom_id": "x", "status": status, "spec_hash": spec, "request_hash": req,
             "job": f"j{i}", "finished_at": f"t{i:02d}", "attempts": 1,
             "output": f"answer {i}" if status == SUCCEEDED else None,
             "error": None if status == SUCCEEDED else f"error {i}", "retry": None}
            for i, (status, spec, req) in enumerate(items)]


@given(results)
def test_merge_never_loses_an_answer_and_replays_are_harmless(items: list[tuple[str, str, str]]) -> None:
    rows = as_rows(items)
    final = fold(None, rows, current_spec="S")
    assert final is not None
    if any(r["status"] == SUCCEEDED for r in rows):
        assert final["status"] == SUCCEEDED  # a failure never overwrote an answer
        if any(r["status"] == SUCCEEDED and r["spec_hash"] == "S" for r in rows):
            assert final["spec_hash"] == "S"  # nor a stale answer a current one
    assert fold(final, rows, current_spec="S") == final  # collecting again changes nothing
    failures = sum(1 for r in rows if r["status"] == FAILED)
    assert int(final.get("attempts") or 0) <= max(failures, 1)
    assert merge(final, rows[-1], "S") is None


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=10)


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms())
def test_canonical_json_ignores_key_order_and_integral_floats(value: dict[str, Any],
                                                              rnd: random.Random) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert identity.canonical_json(dict(items)) == identity.canonical_json(value)
    as_float = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                for k, v in value.items()}
    assert identity.canonical_json(as_float) == identity.canonical_json(value)


# --- issue 15: a row recognised by its fingerprint is classified as rendering would ----------------

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from([1, 1.0, "1", 0, 0.0, "0", "", "null"]),
                    st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.text(min_size=0, max_size=6))
_ROWS = st.lists(st.fixed_dictionaries({"a": _VALUES, "b": _VALUES, "c": _VALUES}), min_size=1,
                 max_size=12)
_EDITS = st.lists(st.tuples(st.sampled_from(["edit_a", "edit_b", "edit_c", "drop", "swap_keys"]),
                            st.integers(0, 11), _VALUES), max_size=8)

_MANIFEST = """\
apiVersion: batchrun/v1
kind: BatchJob
metadata: {name: m}
spec:
  model: anthropic/claude-haiku-4-5@20251001
  parameters: {max_tokens: 5}
  source: {file: rows.jsonl, id: id}
  prompt: {user: "%s"}
  destination: {file: out/m.jsonl}
"""


@settings(max_examples=60, deadline=None)
@given(_ROWS, _EDITS, st.booleans(), st.randoms(use_true_random=False))
def test_fingerprint_skipping_classifies_every_row_as_full_rendering(
        old: list[dict[str, Any]], edits: list[tuple[str, int, Any]], jinja: bool,
        rnd: random.Random) -> None:
    """Answer every row of `old`, edit the source (values and their types, nulls, unicode, dropped
    rows, reordered rows and keys, new rows), then classify with and without fingerprints."""
    import json
    import tempfile
    from pathlib import Path

    from runner import api
    from runner.answers.result import make
    from runner.ledger.rowpass import classified_rows, read_ledger, rendered_rows
    from tests.fakes import FakeBackend

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "batchrun.yaml").write_text("backend: local\n")
        # `c` is never read: editing it changes the fingerprint (every column) but not the class.
        user = "{{ a }} {{ b | upper if b is string else b }}" if jinja else "{{ a }}/{{ b }}"
        (root / "m.yaml").write_text(_MANIFEST % user.replace('"', '\\"'))
        rows = [{"id": f"r{i}", **r} for i, r in enumerate(old)]

        def write(table: list[dict[str, Any]]) -> None:
            (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in table))

        write(rows)
        project = api.load_project(cwd=root)
        manifest = project.manifests[0]
        fake = FakeBackend()
        fake.destinations[manifest.destination.location] = [make(
            custom_id=r.custom_id, passthrough={}, ok=True, output="x", error=None, usage=None,
            model=manifest.model.short, spec_hash=manifest.spec_hash, request_hash=r.request_hash,
            job="j", finished_at="t", source_fp=r.source_fp, answered_by="fake")
            for r in rendered_rows(manifest, fake, project.settings)]
        new = [dict(r) for r in rows] + [{"id": f"n{i}", "a": i, "b": "new", "c": None}
                                         for i in range(rnd.randint(0, 2))]
        for kind, index, value in edits:
            if not new:
                break
            target = new[index % len(new)]
            if kind == "drop":
                new.remove(target)
            elif kind == "swap_keys":
                new[index % len(new)] = dict(reversed(list(target.items())))
            else:
                target[kind[-1]] = value
        rnd.shuffle(new)
        write(new)
        ledger = read_ledger(manifest, fake, [])
        by_fp = {r.custom_id: kind for r, kind, _ in classified_rows(
            manifest, fake, project.settings, ledger)}
        rendered = {r.custom_id: kind for r, kind, _ in classified_rows(
            manifest, fake, project.settings, ledger, fingerprints=False)}
        assert by_fp == rendered
        assert len(by_fp) == len(new)
        # And skipping happened: every row whose line is unchanged was not rendered (a JSONL row's
        # fingerprint is its line's: keys swapped re-render it, to be found answered by request).
        before = {r["id"]: json.dumps(r) for r in rows}
        unchanged = {r["id"] for r in new if before.get(r["id"]) == json.dumps(r)}
        skipped = {r.custom_id for r, _, _ in classified_rows(
            manifest, fake, project.settings, ledger) if r.skipped}
        assert skipped == unchanged
