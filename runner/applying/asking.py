"""An approved plan carried out when the world may move meanwhile: if another apply sent its rows,
nothing was sent, and with a person there the new plan is shown and approved again; without one
the refusal stands (RowsChangedError). Owns that loop; the planner and the person are handed in,
so apply never plans on its own and never talks to anyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runner.applying.report import ApplyReport
from runner.errors import RowsChangedError
from runner.planning.plan import Plan
from runner.planning.prepared import Work


@dataclass(frozen=True)
class Review:
    """The person's side of an apply: what they are shown, and their yes."""

    show: Callable[[Plan], None]  # a plan, as the person reads it
    approve: Callable[[Plan], None]  # raises ApprovalError unless the person says yes
    refused: Callable[[RowsChangedError], None]  # why the approved plan was not carried out
    again: bool  # someone is there to look at a new plan (a terminal, not --auto-approve)


def carry_out(approved: Plan, work: Work, review: Review, *,
              apply: Callable[[Plan, Work], ApplyReport], replan: Callable[[Work], Plan],
              check: Callable[[Plan], None]) -> ApplyReport:
    """Apply the plan that was approved, with the rows its row pass kept in `work`; when its rows
    changed, `replan` into the same work, `check` the new plan (budgets) and ask again."""
    while True:
        try:
            return apply(approved, work)
        except RowsChangedError as exc:
            if not review.again:
                raise
            review.refused(exc)
            work.close()
            approved = replan(work)
            review.show(approved)
            check(approved)
            if not approved.has_changes:
                return ApplyReport()
            review.approve(approved)
