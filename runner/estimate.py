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
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final

from runner.spec import Family, ModelRef

DOCUMENTED_ERROR: Final = 0.25  # relative error of the approximation on English prose


@dataclass(frozen=True, slots=True)
class Price:
    """Batch rates in USD per 1M tokens, with the long-context bands the model's page publishes."""

    input: float
    output: float
    cache_read: float = 0.0  # per 1M tokens read from the prompt cache
    cache_write: float = 0.0  # per 1M tokens written to it (5-minute entries)
    # (prompt tokens over which, factor on the input and cache rates, factor on the output rate)
    bands: tuple[tuple[int, float, float], ...] = ()

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """At the base rates: for rows whose prompt sizes are not known one by one."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000

    def band_index(self, prompt_tokens: int) -> int:
        """0 for the base rates, i for the i-th band a prompt of this size falls in."""
        return sum(1 for over, _, _ in self.bands if prompt_tokens > over)

    def band(self, prompt_tokens: int) -> Price:
        """The flat rates a prompt of this many tokens pays."""
        return self.rates(self.band_index(prompt_tokens))

    def rates(self, index: int) -> Price:
        """The flat rates of band `index` (0: the base rates)."""
        _, factor, out = self.bands[index - 1] if index else (0, 1.0, 1.0)
        return Price(self.input * factor, self.output * out, self.cache_read * factor,
                     self.cache_write * factor)

    def row_cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0,
                 cache_write: int = 0) -> float:
        """One request, in the band its whole prompt (input and cache tokens) falls in."""
        rates = self.band(input_tokens + cache_read + cache_write)
        return (input_tokens * rates.input + output_tokens * rates.output
                + cache_read * rates.cache_read + cache_write * rates.cache_write) / 1_000_000


@dataclass(slots=True)
class Tally:
    """The rows to do, by price band: each row's band follows its own (approximate) prompt size."""

    price: Price | None
    bands: dict[int, list[int]] = field(default_factory=dict)  # band -> [rows, input tokens]

    def add(self, prompt_tokens: int) -> None:
        slot = self.bands.setdefault(self.price.band_index(prompt_tokens) if self.price else 0,
                                     [0, 0])
        slot[0] += 1
        slot[1] += prompt_tokens

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self.bands.values())

    @property
    def tokens(self) -> int:
        return sum(tokens for _, tokens in self.bands.values())

    def cost(self, output_per_row: float) -> float | None:
        """Every row's input in its band, and `output_per_row` tokens out at that band's rate."""
        if self.price is None:
            return None
        total = 0.0
        for index, (rows, tokens) in self.bands.items():
            rates = self.price.rates(index)
            total += tokens * rates.input + rows * output_per_row * rates.output
        return total / 1_000_000


@cache
def _table() -> dict[str, dict[str, Any]]:
    text = (resources.files("runner") / "data" / "pricing.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def _packaged(entry: Mapping[str, Any]) -> Price:
    factor = 1 + float(entry.get("regional_premium") or 0)
    base = float(entry["input"]) * factor
    cache_rates = entry.get("cache") or {}
    return Price(base, float(entry["output"]) * factor,
                 base * float(cache_rates.get("read", 0)), base * float(cache_rates.get("write_5m", 0)),
                 tuple((int(b["prompt_tokens_over"]), float(b["factor"]),
                        float(b.get("output_factor", b["factor"]))) for b in entry.get("bands", ())))


def price_for(model: ModelRef, overrides: Mapping[str, Mapping[str, float]]) -> Price | None:
    """The batch price of `model`: batchrun.yaml's pricing first (as given, flat), then the packaged
    table, with its regional premium (batch jobs never run on the global endpoint) and bands."""
    for key in (model.short, model.base):
        if key in overrides:
            return Price(float(overrides[key]["input"]), float(overrides[key]["output"]))
        entry = _table().get(key)
        if entry is not None:
            return _packaged(entry)
    return None


def approx_tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(str(b.get("text", ""))) for b in content if isinstance(b, dict))
    return 0


def _gemini_chars(turns: list[Any]) -> int:
    return sum(len(str(part.get("text") or "")) for turn in turns if isinstance(turn, dict)
               for part in turn.get("parts") or () if isinstance(part, dict))


def prompt_chars(family: Family, row: Mapping[str, Any]) -> int:
    """Characters of the text the model reads in one request row."""
    if family is Family.CLAUDE:
        request = row.get("request") or {}
        return _content_chars(request.get("system", "")) + sum(
            _content_chars(m.get("content")) for m in request.get("messages") or ())
    if family is Family.GEMINI_EMBEDDINGS:
        content = (row.get("request") or {}).get("content") if "request" in row else row.get(
            "content")
        return len(content) if isinstance(content, str) else _gemini_chars([content])
    if family is Family.GEMINI:
        request = row.get("request") or {}
        return _gemini_chars([request.get("systemInstruction"), *(request.get("contents") or ())])
    body = row.get("body") or {}
    if family is Family.OPENAI_EMBEDDINGS:
        value = body.get("input", "")
        return sum(len(str(v)) for v in value) if isinstance(value, list) else len(str(value))
    return sum(_content_chars(m.get("content")) for m in body.get("messages") or ())


def request_tokens(family: Family, row: Mapping[str, Any]) -> int:
    return approx_tokens(prompt_chars(family, row))


@dataclass(frozen=True, slots=True)
class Estimate:
    """Tokens and cost of the rows to do (display and budget; apply sends rows, not estimates)."""

    input_tokens: int = 0
    output_tokens: int = 0
    output_basis: str = "unknown"  # "history", "max_tokens" (an upper bound), "embeddings"
    cost: float | None = None  # USD; None when the model has no known price
    max_cost: float | None = None
    over_budget: bool = False
