"""The reconcile rules (one table in runner.reconcile) and the collect merge rules, each as one
parametrised table."""

from __future__ import annotations

from typing import Any

import pytest

from runner.answers.collect import merge
from runner.ledger.rules import RULES, RowClass, RowFacts, classify, ledger_state

F = RowFacts


@pytest.mark.parametrize(("facts", "expected"), [
    (F(), RowClass.TO_DO),                                          # new row
    (F(answered=True), RowClass.DONE),                              # answered, current spec
    (F(answered=True, in_flight=True), RowClass.DONE),              # answered wins over a resend
    (F(pending_success=True), RowClass.DONE),                       # waiting to be collected
    (F(in_flight=True), RowClass.IN_FLIGHT),                        # running job, same spec
    (F(in_flight=True, failures=5), RowClass.IN_FLIGHT),            # running beats out-of-attempts
    (F(failures=1, max_attempts=3), RowClass.TO_DO),                # retry
    (F(failures=3, max_attempts=3), RowClass.FAILED),               # attempts used up
    (F(failures=1, max_attempts=1), RowClass.FAILED),
    (F(reshapable=True), RowClass.RESHAPE),                         # same request, other shaping
    (F(reshapable=True, failures=1), RowClass.TO_DO),               # the new shaping refused it
    (F(reshapable=True, in_flight=True), RowClass.IN_FLIGHT),
])
def test_row_rules(facts: RowFacts, expected: RowClass) -> None:
    assert classify(facts) is expected


def test_every_rule_is_reachable() -> None:
    outcomes = {classify(f) for f in (F(), F(answered=True), F(in_flight=True), F(failures=9),
                                      F(reshapable=True))}
    assert outcomes == {outcome for _, _, outcome in RULES}


def row(status: str = "succeeded", spec: str = "S", req: str = "R", job: str = "j1",
        at: str = "t1", **extra: Any) -> dict[str, Any]:
    return {"custom_id": "x", "status": status, "spec_hash": spec, "request_hash": req, "job": job,
            "finished_at": at, "error": None if status == "succeeded" else "boom", "attempts": 1,
            "output": "answer" if status == "succeeded" else None, "retry": None, **extra}


@pytest.mark.parametrize(("name", "existing", "new", "expect"), [
    ("first answer", None, row(), "new"),
    ("first failure", None, row("failed"), "new"),
    ("same job again is ignored", row(), row(job="j1", at="t9"), "keep"),
    ("newer success replaces older success", row(at="t1"), row(job="j2", at="t2"), "new"),
    ("older success does not replace newer", row(at="t5"), row(job="j2", at="t2"), "keep"),
    ("older success of another request is a replay", row(req="R2", at="t5"),
     row(job="j2", at="t2"), "keep"),
    ("stale-spec success never replaces current", row(), row(spec="OLD", job="j2", at="t9"), "keep"),
    ("success replaces failure", row("failed"), row(job="j2"), "new"),
    ("failure never replaces success", row(spec="OLD"), row("failed", job="j2", at="t2"), "retry"),
    ("failure counts attempts", row("failed"), row("failed", job="j2", at="t2"), "attempt+1"),
    ("failure of another request restarts", row("failed", req="R0"),
     row("failed", job="j2", at="t2"), "new"),
    ("an older failure is a replay", row("failed", at="t5"), row("failed", job="j2", at="t2"),
     "keep"),
])
def test_merge_rules(name: str, existing: dict[str, Any] | None, new: dict[str, Any],
                     expect: str) -> None:
    merged = merge(existing, new, current_spec="S")
    if expect == "keep":
        assert merged is None, name
    elif expect == "new":
        assert merged == new, name
    elif expect == "attempt+1":
        assert merged is not None and merged["attempts"] == 2 and merged["job"] == "j2"
    else:
        assert merged is not None and merged["output"] == "answer"  # the answer stays
        assert merged["retry"]["attempts"] == 1 and merged["retry"]["error"] == "boom"
        again = merge(merged, {**new, "job": "j3", "finished_at": "t3"}, current_spec="S")
        assert again is not None and again["retry"]["attempts"] == 2
        assert merge(again, {**new, "job": "j3", "finished_at": "t3"}, current_spec="S") is None
        assert merge(again, new, current_spec="S") is None  # replaying j2 changes nothing


def test_ledger_state_reads_attempts_from_the_answer_or_its_retry() -> None:
    assert ledger_state(row(), "S", "R").answered
    assert not ledger_state(row(), "S", "R2").answered
    assert ledger_state(row("failed", attempts=2), "S", "R").failures == 2
    kept = row(spec="OLD", retry={"spec_hash": "S", "request_hash": "R", "attempts": 3,
                                  "error": "quota"})
    state = ledger_state(kept, "S", "R")
    assert (state.answered, state.failures, state.last_error) == (False, 3, "quota")
