"""Identity, pure: canonical JSON, the spec hash, request hashes and the Vertex labels of DESIGN §3.

Changing anything here changes every user's hashes and re-runs their rows: the pinned values in
tests/test_identity.py must fail first.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import orjson

from runner.spec import ExecutorSpec, Manifest, Template

MANAGED_LABEL: Final = "batchrun-managed"
MANAGED_VALUE: Final = "v1"
NAME_LABEL: Final = "batchrun-name"
SPEC_LABEL: Final = "batchrun-spec"
INPUT_LABEL: Final = "batchrun-input"
SHARD_LABEL: Final = "batchrun-shard"
# A preview's job: its answers are collected only once its spec is the manifest's (never by another
# spec's apply, which would overwrite the answers of the spec in use).
PREVIEW_LABEL: Final = "batchrun-preview"
# The project that made the job (batchrun.yaml's id): projects sharing a GCP project and region
# list each other's jobs, and take none of them for their own.
PROJECT_LABEL: Final = "batchrun-project"
# A digest per part of the spec (SPEC_PARTS), so a later plan can say what changed since a job's
# spec (prompt, model...): only a record, never identity.
PARTS_LABEL: Final = "batchrun-parts"
SPEC_PARTS: Final = ("model", "prompt", "parameters", "response", "destination")
RESERVED_PREFIXES: Final = ("batchrun-", "aiplatform.googleapis.com/")
MAX_LABELS: Final = 64


def normalise(value: Any) -> Any:
    """Make YAML spellings that mean the same thing hash the same (0 and 0.0, dict order)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(normalise(value), option=orjson.OPT_SORT_KEYS)


def digest(data: bytes) -> str:
    """128 bits of sha256 as 32 hex characters: fits a label value and is collision-safe here."""
    return hashlib.sha256(data).hexdigest()[:32]


def _text(template: Template | None) -> str | None:
    return None if template is None else template.text


def spec_material(manifest: Manifest) -> dict[str, Any]:
    """Everything that decides a row's answer; not the rows, not labels, not max_attempts."""
    prompt = manifest.prompt
    return {
        "version": 1,
        "model": manifest.model.resource,
        "task": manifest.task.value,
        "family": manifest.family.value,
        "parameters": dict(manifest.parameters),
        "prompt": {
            "system": _text(prompt.system),
            "user": _text(prompt.user),
            "examples": [[u.text, a.text] for u, a in prompt.examples],
            "input": _text(prompt.input),
        },
        "response": {"format": manifest.response.format, "schema": manifest.response.schema},
        "destination": {"kind": manifest.destination.kind.value,
                        "location": manifest.destination.identity},
    }


def spec_hash(manifest: Manifest) -> str:
    return digest(canonical_json(spec_material(manifest)))


def spec_parts(manifest: Manifest) -> str:
    """The PARTS_LABEL value: 8 hex digits of each part of the spec material, in SPEC_PARTS order
    ("model" holds the task and family the model decides)."""
    m = spec_material(manifest)
    parts = {"model": [m["model"], m["task"], m["family"]], "prompt": m["prompt"],
             "parameters": m["parameters"], "response": m["response"],
             "destination": m["destination"]}
    return "-".join(digest(canonical_json(parts[name]))[:8] for name in SPEC_PARTS)


def changed_parts(old: str, new: str) -> tuple[str, ...] | None:
    """Which parts of the spec differ between two PARTS_LABEL values; None when one is not
    readable (a job made before the label, or by hand)."""
    a, b = old.split("-"), new.split("-")
    if len(a) != len(SPEC_PARTS) or len(b) != len(SPEC_PARTS):
        return None
    return tuple(name for name, x, y in zip(SPEC_PARTS, a, b, strict=True) if x != y)


def request_hash(line: bytes) -> str:
    """Hash of one rendered request row, exactly as sent (custom_id included)."""
    return digest(line)


# --- who answered ---------------------------------------------------------------------------------
# An answer is known by its spec and request (what was asked) and by who answered it: the backend,
# and on the local backend the executor and where it points. The model is the spec's, and a result
# row records it beside `answered_by`.

VERTEX_ANSWERER: Final = "vertex"
LOCAL_JOB_PREFIX: Final = "projects/local/locations/local/batchPredictionJobs/"


def local_answerer(executor: ExecutorSpec | Mapping[str, Any]) -> str:
    """"local echo", "local openai http://127.0.0.1:8000/v1 qwen2.5": the executor's type and
    what reaches the model (its endpoint without credentials or query, its served model, a local
    model's path) — not its concurrency, timeouts or key."""
    get = executor.get if isinstance(executor, Mapping) else (
        lambda key, default=None: getattr(executor, key, default))
    parts = ["local", str(get("type") or "echo")]
    base_url = get("base_url")
    if base_url:
        parts.append(_endpoint(str(base_url)))
    for key in ("model", "model_path"):
        if get(key):
            parts.append(str(get(key)))
    return " ".join(parts)


def _endpoint(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{host}{parts.path.rstrip('/')}" if parts.scheme else url


def backend_of_job(job: str | None) -> str:
    """The backend a job name belongs to: local jobs are named under LOCAL_JOB_PREFIX."""
    return "local" if (job or "").startswith(LOCAL_JOB_PREFIX) else VERTEX_ANSWERER


def same_answerer(answered_by: str | None, job: str | None, current: str,
                  job_answerer: str | None = None) -> bool:
    """Whether a stored answer was made by `current`. A row written before rows recorded it
    (no answered_by) is judged by its job's answerer when the job is still known
    (`job_answerer`), else by its job's backend alone: an upgrade re-pays nothing."""
    if answered_by:
        return answered_by == current
    if job_answerer:
        return job_answerer == current
    if not job:  # nothing tells who made it (a row written by hand): the current answerer's
        return True
    return backend_of_job(job) == current.split(" ", 1)[0]


def answerer_of(row: Mapping[str, Any]) -> str:
    """Who made a stored answer: as the row records it, else its job's backend (a row written
    before rows recorded it)."""
    return str(row.get("answered_by") or backend_of_job(row.get("job")))


def short_model(resource: str) -> str:
    """"publishers/anthropic/models/claude-x@1" -> "anthropic/claude-x@1" (a result row's model)."""
    if resource.startswith("publishers/") and "/models/" in resource:
        publisher, model = resource.removeprefix("publishers/").split("/models/", 1)
        return f"{publisher}/{model}"
    return resource


def job_labels(
    manifest: Manifest, *, input_digest: str, shard: int, user: Mapping[str, str] | None = None
) -> dict[str, str]:
    labels = dict(manifest.labels if user is None else user)
    labels.update({
        MANAGED_LABEL: MANAGED_VALUE,
        NAME_LABEL: manifest.name,
        SPEC_LABEL: manifest.spec_hash,
        INPUT_LABEL: input_digest,
        SHARD_LABEL: str(shard),
        PARTS_LABEL: spec_parts(manifest),
    })
    return labels


def display_name(manifest: Manifest, shard: int) -> str:
    return f"batchrun-{manifest.name}-{manifest.spec_hash[:8]}-{shard}"[:128]


def _first_ok(ch: str) -> bool:
    return unicodedata.category(ch) in ("Ll", "Lo")


def _rest_ok(ch: str) -> bool:
    return ch in "_-" or unicodedata.category(ch) in ("Ll", "Lo", "Nd", "Nl", "No")


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid Vertex label key, or None (the stricter common subset, reference §6)."""
    if not key or len(key) > 63:
        return "label keys are 1 to 63 characters"
    if not _first_ok(key[0]):
        return "label keys start with a lowercase letter"
    if not all(_rest_ok(c) for c in key[1:]):
        return "label keys hold only lowercase letters, digits, '_' and '-'"
    if key.startswith(RESERVED_PREFIXES):
        return "the batchrun- prefix is reserved for batchrun's own labels"
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > 63:
        return f"label values are at most 63 characters (this one has {len(value)})"
    if not all(_rest_ok(c) for c in value):
        return "label values hold only lowercase letters, digits, '_' and '-'"
    return None
