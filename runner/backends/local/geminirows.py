"""Gemini rows for the local backend: a request's texts, an output row as Vertex writes one, and the
translation to and from an OpenAI-compatible endpoint, so a local model serves a Gemini manifest
offline. Knows no plan; moves request and answer shapes only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final

# OpenAI finish_reason -> Gemini finishReason
_FINISH: Final = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY",
                  "tool_calls": "STOP", "function_call": "STOP"}
# generationConfig -> the OpenAI chat parameter of the same meaning
_PARAMS: Final = {"maxOutputTokens": "max_tokens", "temperature": "temperature", "topP": "top_p",
                  "stopSequences": "stop", "seed": "seed", "presencePenalty": "presence_penalty",
                  "frequencyPenalty": "frequency_penalty", "candidateCount": "n"}


def line(row: Mapping[str, Any], response: Mapping[str, Any] | None,
         failure: str = "") -> dict[str, Any]:
    """An output row: the id sent, the request, and the response or a failed `status`."""
    out = {"custom_id": row.get("custom_id"), "status": failure,
           "processed_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
           "request": row.get("request")}
    if response is not None:
        out["response"] = dict(response)
    return out


def refused(row: Mapping[str, Any], message: str, code: int = 400,
            status: str = "INVALID_ARGUMENT") -> dict[str, Any]:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    body = {"error": {"code": code, "message": message, "status": status}}
    return line(row, None, f"{phrase}: {json.dumps(body)}")


def _parts_text(turn: Any) -> str:
    if not isinstance(turn, Mapping):
        return ""
    return "".join(str(p.get("text") or "") for p in turn.get("parts") or ()
                   if isinstance(p, Mapping) and not p.get("thought"))


def last_user_text(request: Mapping[str, Any]) -> str:
    for turn in reversed(list(request.get("contents") or ())):
        if isinstance(turn, Mapping) and turn.get("role", "user") == "user":
            return _parts_text(turn)
    return ""


def answer(text: str, prompt_tokens: int, output_tokens: int, model: str,
           finish: str = "STOP", thoughts: str = "") -> dict[str, Any]:
    """A GenerateContentResponse with one candidate (thoughts first, as a thought part)."""
    parts: list[dict[str, Any]] = [{"text": thoughts, "thought": True}] if thoughts else []
    parts.append({"text": text})
    return {"candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": prompt_tokens,
                              "candidatesTokenCount": output_tokens,
                              "totalTokenCount": prompt_tokens + output_tokens},
            "modelVersion": model.rsplit("/", 1)[-1]}


def openai_body(request: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The OpenAI chat request that asks what the Gemini request asks."""
    messages = []
    system = _parts_text(request.get("systemInstruction"))
    if system:
        messages.append({"role": "system", "content": system})
    for turn in request.get("contents") or ():
        if isinstance(turn, Mapping):
            role = "assistant" if turn.get("role") == "model" else "user"
            messages.append({"role": role, "content": _parts_text(turn)})
    body: dict[str, Any] = {"model": model, "messages": messages}
    config = request.get("generationConfig") or {}
    body.update((_PARAMS[k], v) for k, v in config.items() if k in _PARAMS)
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    if schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": "answer", "schema": schema}}
    elif config.get("responseMimeType") == "application/json":
        body["response_format"] = {"type": "json_object"}
    return body


def from_openai(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The endpoint's chat completion as a GenerateContentResponse (its reasoning as thoughts)."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(
        choices[0], Mapping) else {}
    message = _mapping(choice.get("message"))
    usage = _mapping(body.get("usage"))
    details = usage.get("completion_tokens_details")
    thinking = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    out = answer(str(message.get("content") or ""), _int(usage.get("prompt_tokens")),
                 _int(usage.get("completion_tokens")), str(body.get("model") or model),
                 _FINISH.get(str(choice.get("finish_reason")), "OTHER"),
                 str(message.get("reasoning_content") or message.get("reasoning") or ""))
    if _int(thinking):  # OpenAI counts reasoning inside completion_tokens; Gemini beside them
        meta = out["usageMetadata"]
        meta["thoughtsTokenCount"] = _int(thinking)
        meta["candidatesTokenCount"] = max(0, meta["candidatesTokenCount"] - _int(thinking))
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def embedding_text(row: Mapping[str, Any]) -> str:
    """The text of an embedding row: gemini-embedding's request.content, or the older content."""
    request = row.get("request")
    if isinstance(request, Mapping):
        return _parts_text(request.get("content"))
    return str(row.get("content") or "")


def embedding_line(row: Mapping[str, Any], vector: list[float] | None, tokens: int,
                   failure: str = "") -> dict[str, Any]:
    """An embedding output row in the shape of the row's model: `key`, `request` and
    response.embedding (gemini-embedding-*), or `instance` and predictions (the older ones)."""
    if "request" in row:
        out: dict[str, Any] = {"key": row.get("key"), "request": row.get("request"),
                               "status": failure}
        if vector is not None:
            out["response"] = {"embedding": {"values": vector},
                               "usageMetadata": {"promptTokenCount": tokens}}
        return out
    predictions = [] if vector is None else [{"embeddings": {
        "statistics": {"token_count": tokens, "truncated": False}, "values": vector}}]
    return {"instance": dict(row), "predictions": predictions, "status": failure}


def embedding_refused(row: Mapping[str, Any], message: str, code: int = 400) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    body = {"error": {"code": code, "message": message, "status": "INVALID_ARGUMENT"}}
    return embedding_line(row, None, 0, f"{phrase}: {json.dumps(body)}")
