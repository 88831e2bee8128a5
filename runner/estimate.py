"""Token and cost estimates, pure: the offline token approximation, the packaged batch price table
(overridable in batchrun.yaml) and the cost of a number of tokens.

The approximation is one token per four characters of the text the model reads (system prompt,
messages, or embedding input). For English prose it is typically within 25% of the real tokenizers'
count; code, numbers and non-Latin scripts can differ more. `--exact-tokens` asks Vertex instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

from runner.spec import Family, ModelRef

DOCUMENTED_ERROR: Final = 0.25  # relative error of the approximation on English prose


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M input tokens, batch
    output: float  # USD per 1M output tokens, batch

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@cache
def _table() -> dict[str, dict[str, Any]]:
    text = (resources.files("runner") / "data" / "pricing.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def price_for(model: ModelRef, overrides: Mapping[str, Mapping[str, float]]) -> Price | None:
    """The batch price of `model`: batchrun.yaml's pricing first (as given), then the packaged
    table, with its regional premium (batch jobs never run on the global endpoint)."""
    for key in (model.short, model.base):
        if key in overrides:
            return Price(float(overrides[key]["input"]), float(overrides[key]["output"]))
        entry = _table().get(key)
        if entry is not None:
            factor = 1 + float(entry.get("regional_premium") or 0)
            return Price(float(entry["input"]) * factor, float(entry["output"]) * factor)
    return None


def approx_tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(str(b.get("text", ""))) for b in content if isinstance(b, dict))
    return 0


def prompt_chars(family: Family, row: Mapping[str, Any]) -> int:
    """Characters of the text the model reads in one request row."""
    if family is Family.CLAUDE:
        request = row.get("request") or {}
        return _content_chars(request.get("system", "")) + sum(
            _content_chars(m.get("content")) for m in request.get("messages") or ())
    body = row.get("body") or {}
    if family is Family.OPENAI_EMBEDDINGS:
        value = body.get("input", "")
        return sum(len(str(v)) for v in value) if isinstance(value, list) else len(str(value))
    return sum(_content_chars(m.get("content")) for m in body.get("messages") or ())


def request_tokens(family: Family, row: Mapping[str, Any]) -> int:
    return approx_tokens(prompt_chars(family, row))
