"""What the fake Vertex service refuses at create, as Vertex answers it: the body's shape, the
model's endpoint, labels. Pure."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str, rpc_status: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.rpc_status = rpc_status



def validate(location: str, body: dict[str, Any]) -> None:
    if not body.get("displayName"):
        raise ApiError(400, "displayName is required.")
    model = str(body.get("model", ""))
    if not model.startswith(("publishers/", "projects/")):
        raise ApiError(400, f"Invalid model {model!r}.")
    inp, out = body.get("inputConfig") or {}, body.get("outputConfig") or {}
    if location == "global" and "/publishers/google/" not in f"/{model}":
        raise ApiError(404, f"Publisher Model `projects/p/locations/global/{model}` not found.")
    if location == "global" and ("bigquerySource" in inp or "bigqueryDestination" in out):
        # the docs: batch on the global endpoint "does not support BigQuery tables as input or
        # output"; how Vertex refuses it is not captured (inferred: at create, 400)
        raise ApiError(400, "BigQuery input and output are not supported on the global endpoint.",
                       "INVALID_ARGUMENT")
    sources = [k for k in ("gcsSource", "bigquerySource") if k in inp]
    dests = [k for k in ("gcsDestination", "bigqueryDestination") if k in out]
    if len(sources) != 1 or len(dests) != 1:
        raise ApiError(400, "Exactly one input source and one output destination are required.")
    fmt = {"gcsSource": "jsonl", "bigquerySource": "bigquery"}[sources[0]]
    if inp.get("instancesFormat") != fmt:
        raise ApiError(400, f"instancesFormat must be {fmt} for {sources[0]}.")
    for key, value in (body.get("labels") or {}).items():
        if len(key) > 63 or len(str(value)) > 63 or key != key.lower():
            raise ApiError(400, f"Invalid label {key}={value}.")
