"""Edge: `batchrun models` in words (a fixed-width table) and as one versioned JSON document. No
logic: the rows come from runner.modelinfo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from runner.estimate import Price
from runner.models.info import ModelInfo

VERSION: Final = 1
COLUMNS: Final = ("MODEL", "TASK", "REGIONS", "STATUS", "BATCH $/1M IN/OUT", "SOURCE")


def _price(price: Price | None) -> str:
    if price is None:
        return "-"
    mark = "*" if price.bands else ""
    return f"{price.input:g} / {price.output:g}{mark}"


def _source(m: ModelInfo) -> str:
    first = m.sources[0]  # the one the status rests on
    return f"{first['kind']} {first['date']}"


def _row(m: ModelInfo) -> tuple[str, ...]:
    status = f"{m.status} ({m.confidence})"
    return (m.id, m.task, ",".join(m.regions), status, _price(m.price), _source(m))


def models_text(models: Sequence[ModelInfo], no_current: Sequence[str] = ()) -> str:
    """The table, then what its marks mean and where the rest is."""
    if not models:
        return "No model in batchrun's catalogue matches.\n"
    rows = [COLUMNS, *(_row(m) for m in models)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    for m in models:
        if m.price and m.price.bands:
            bands = "; ".join(f"prompts over {over:,} tokens pay {factor:g}x" + (
                f" (output {out:g}x)" if out != factor else "") for over, factor, out in m.price.bands)
            lines.append(f"* {m.id}: {bands}")
    for task in no_current:
        lines.append(f"No {task} model is known to be current for batch jobs.")
    lines.append("confidence: confirmed = Google's or Anthropic's own page; secondary = a third "
                 "party or an old note. Every source: batchrun models --json.")
    return "\n".join(lines) + "\n"


def _price_json(price: Price | None) -> dict[str, Any] | None:
    if price is None:
        return None
    return {"input": round(price.input, 6), "output": round(price.output, 6),
            "cache_read": round(price.cache_read, 6), "cache_write": round(price.cache_write, 6),
            "bands": [{"prompt_tokens_over": over, "factor": factor, "output_factor": out}
                      for over, factor, out in price.bands]}


def models_json(models: Sequence[ModelInfo], no_current: Sequence[str] = ()) -> str:
    doc = {"version": VERSION, "no_current_model_for": list(no_current), "models": [
        {"id": m.id, "task": m.task, "regions": list(m.regions), "status": m.status,
         "confidence": m.confidence, "replacement": m.replacement, "retires": m.retires,
         "price_per_million_batch": _price_json(m.price), "note": m.note,
         "sources": [dict(s) for s in m.sources]} for m in models]}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
