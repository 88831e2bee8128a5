"""What ran and what it cost: the jobs of the project's manifests, and the tokens their answers
recorded. Reads only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runner.answers import result
from runner.backends.base import BackendReader, RemoteJob
from runner.lazy import lazy_module
from runner.spec import Manifest, Settings

if TYPE_CHECKING:
    from runner import estimate
    from runner.answers import collect
else:  # `batchrun render` imports the API, which names these types: it need not load answers
    collect = lazy_module("runner.answers.collect")
    estimate = lazy_module("runner.estimate")


@dataclass(frozen=True)
class JobStatus:
    manifest: str
    job: str
    state: str
    current_spec: bool
    succeeded: int | None
    failed: int | None
    age_seconds: float | None
    error: str | None
    preview: bool = False  # a preview's job: its spec's, collected once that spec is applied


def _age(job: RemoteJob, now: datetime) -> float | None:
    if not job.create_time:
        return None
    created = datetime.fromisoformat(job.create_time.replace("Z", "+00:00"))
    return (now - created).total_seconds()


def status(manifests: Sequence[Manifest], backend: BackendReader,
           name: str | None = None) -> list[JobStatus]:
    specs = {m.name: m.spec_hash for m in manifests}
    now = datetime.now(UTC)
    out = []
    for job in backend.list_jobs():
        if (name is not None and job.manifest_name != name) or (
                name is None and job.manifest_name not in specs):
            continue
        out.append(JobStatus(job.manifest_name, job.name, job.state.short,
                             specs.get(job.manifest_name) == job.spec_hash, job.succeeded_count,
                             job.failed_count, _age(job, now), job.error_message,
                             job.preview))
    return sorted(out, key=lambda s: (s.manifest, -(s.age_seconds or 0)))


@dataclass(frozen=True)
class Usage:
    """Tokens and cost actually used, from the usage recorded with each answer."""

    manifest: str
    rows: int
    input_tokens: int
    output_tokens: int
    cost: float | None
    states: dict[str, int] = field(default_factory=dict)  # stored rows by result.State


def usage(manifests: Sequence[Manifest], backend: BackendReader,
          settings: Settings) -> list[Usage]:
    out = []
    for m in manifests:
        rows = tokens_in = tokens_out = 0
        cost = 0.0
        states: Counter[str] = Counter()
        answerer = backend.answerer(m.model.resource)
        price = estimate.price_for(m.model, settings.pricing)
        for row in backend.read_destination(m.destination):
            states[result.state_of(row, m.spec_hash, answerer, m.max_attempts).value] += 1
            counts = row.get("usage")
            if isinstance(counts, dict):
                rows += 1
                paid = collect.paid(row)  # every attempt, retries included
                tokens_in += paid["input_tokens"]
                tokens_out += paid["output_tokens"]
                if price is not None:  # each row in the band of its own prompt
                    cost += price.row_cost(paid["input_tokens"], paid["output_tokens"],
                                           int(paid.get("cache_read_input_tokens", 0)),
                                           int(paid.get("cache_creation_input_tokens", 0)))
        out.append(Usage(m.name, rows, tokens_in, tokens_out,
                         cost if price else None, dict(states)))
    return out
