"""Property-based tests (hypothesis) of the reconcile and merge rules and of hashing stability."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runner import identity
from runner.collect import FAILED, SUCCEEDED, fold, merge
from runner.reconcile import RowClass, RowFacts, classify

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
