"""Whether a plan may be carried out within its budgets: the refusal, in words, when an estimate is
over a manifest's max_cost or the project's. Pure: reads the plan only."""

from __future__ import annotations

from runner.errors import BudgetError, error, usd, usd_apart
from runner.planning.plan import Plan


def check_budget(the_plan: Plan) -> None:
    """BudgetError when the plan's estimate is over a max_cost: nothing is sent."""
    if not the_plan.over_budget:
        return
    diagnostics = []
    if the_plan.total_over_budget:
        total = sum(m.estimate.cost or 0 for m in the_plan.manifests)
        diagnostics.append(error(
            "over budget: this apply is estimated at {}, more than max_cost {}".format(
                *usd_apart(total, the_plan.max_cost)),
            hint="raise max_cost, or narrow the run with --target"))
    for m in the_plan.manifests:
        e = m.estimate
        if not e.over_budget:
            continue
        if e.cost is None:
            diagnostics.append(error(
                f"{m.name}: over budget: no price is known for this model, so it cannot be "
                f"checked against max_cost {usd(e.max_cost)}",
                hint="give its batch price in batchrun.yaml (pricing: {publisher/model: {input: "
                     "USD per 1M tokens, output: USD per 1M tokens}}), or remove max_cost"))
        else:
            diagnostics.append(error(
                "{}: over budget: estimated {} is more than max_cost {}".format(
                    m.name, *usd_apart(e.cost, e.max_cost)),
                hint="raise max_cost, or narrow the run with --target"))
    raise BudgetError(diagnostics)
