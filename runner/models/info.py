"""What `batchrun models` lists: each catalogue entry with its status, confidence, regions, batch
price and sources. Pure data from the packaged catalogue and price table; display words it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from runner import estimate
from runner.models import catalog
from runner.spec import Task

_ORDER: Final = {status: i for i, status in enumerate(catalog.STATUSES)}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    task: str
    regions: tuple[str, ...]
    status: str
    confidence: str
    price: estimate.Price | None  # batch, per 1M tokens, the regional premium included
    sources: tuple[Mapping[str, Any], ...]
    note: str = ""
    replacement: str | None = None
    retires: str | None = None


def listing(task: Task | None = None, region: str | None = None) -> list[ModelInfo]:
    """The catalogue's models, current first, of `task` and batch-capable in `region` if given."""
    out = []
    for name in catalog.known_models():
        model = catalog.parse_model(name)
        entry = catalog.entry(model) if model else None
        if model is None or entry is None:
            continue
        if task is not None and entry["task"] != task.value:
            continue
        if region is not None and region not in entry.get("regions", ()):
            continue
        out.append(ModelInfo(
            id=name, task=entry["task"], regions=tuple(entry.get("regions", ())),
            status=entry["status"], confidence=entry["confidence"],
            price=estimate.price_for(model, {}), sources=tuple(entry["sources"]),
            note=entry.get("note", ""), replacement=entry.get("replacement"),
            retires=entry.get("retires")))
    return sorted(out, key=lambda m: (m.task, _ORDER.get(m.status, 9), m.id))


def none_current(task: Task) -> bool:
    """True when the catalogue knows no current model of `task`."""
    return not catalog.models_of(task)
