"""Tolerant parsing of Vertex output lines (reference §9-§11) into one result shape. Pure.

Every documented and inferred shape is accepted; an unknown shape becomes a failed row with the
raw text kept, never an exception.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, Final

import orjson

from runner.answers import gemini
from runner.answers.parsed import ParsedOutput, empty, error_text, status_error
from runner.rpc import Code
from runner.spec import Family

__all__ = ["ParsedOutput", "parse_line"]

RAW_KEEP = 2000  # characters of an unparseable line kept in the error


def _response(data: dict[str, Any]) -> Any:
    """`response` as an object: BigQuery output tables may hand it over as JSON text."""
    response = data.get("response")
    if isinstance(response, str):
        try:
            return json.loads(response)
        except ValueError:
            return None
    return response


def _custom_id(data: dict[str, Any]) -> str | None:
    """The top-level custom_id, else the one inside an echoed request or body."""
    if data.get("custom_id") is not None:
        return _id(data["custom_id"])
    for key in ("request", "body"):
        inner = data.get(key)
        if isinstance(inner, dict) and inner.get("custom_id") is not None:
            return _id(inner["custom_id"])
    return None


# Cache tokens as each family reports them: Anthropic's are counted beside input_tokens, OpenAI's
# cached_tokens are a part of prompt_tokens. Kept under their own names; absent when not reported.
_CLAUDE_CACHE: Final = ("cache_read_input_tokens", "cache_creation_input_tokens")


def _claude_usage(usage: dict[str, Any]) -> dict[str, int]:
    counts = {"input_tokens": int(usage.get("input_tokens") or 0),
              "output_tokens": int(usage.get("output_tokens") or 0)}
    counts.update({k: int(usage[k]) for k in _CLAUDE_CACHE if usage.get(k) is not None})
    return counts


def _batch_result(custom_id: str | None, result: dict[str, Any]) -> ParsedOutput | Any:
    """Anthropic's batch result shape ({"type": "succeeded", "message"} / "errored" / "expired" /
    "canceled"), in case Vertex writes it: the message to read on, or the row's failure."""
    kind = result.get("type")
    if kind == "succeeded":
        return result.get("message")
    if kind in ("expired", "canceled"):  # never ran: not the row's doing
        return ParsedOutput(custom_id, False, error=f"the request {kind} before it ran ({kind})",
                            code=Code.DEADLINE_EXCEEDED if kind == "expired" else Code.CANCELLED)
    text, code = error_text(result.get("error") or result)
    return ParsedOutput(custom_id, False, error=text, code=code)


def _claude(data: dict[str, Any]) -> ParsedOutput:
    custom_id = _custom_id(data)
    status = data.get("status") or ""
    response = _response(data)
    if response is None and isinstance(data.get("result"), dict):
        response = _batch_result(custom_id, data["result"])
        if isinstance(response, ParsedOutput):
            return response
    if status:
        text, code = status_error(str(status))
        return ParsedOutput(custom_id, False, error=text, code=code)
    if isinstance(response, dict) and response.get("type") == "error":
        text, code = error_text(response.get("error") or response)
        return ParsedOutput(custom_id, False, error=text, code=code)
    if not isinstance(response, dict) or "content" not in response:
        return ParsedOutput(custom_id, False, error="no answer in the output row")
    counts = _claude_usage(response.get("usage") or {})
    blocks = [b for b in response.get("content") or [] if isinstance(b, dict)]
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type", "text") == "text")
    tools = [{"name": b.get("name"), "input": b.get("input")} for b in blocks
             if b.get("type") == "tool_use"]
    if tools:
        return ParsedOutput(custom_id, True, output={"text": text, "tool_calls": tools},
                            usage=counts)
    if not text.strip():
        reason = response.get("stop_reason")
        why = ("content: null" if response.get("content") is None
               else f"stop_reason: {reason}" if reason else "empty content")
        return ParsedOutput(custom_id, False, error=empty(why), usage=counts)
    return ParsedOutput(custom_id, True, output=text, usage=counts)


def _vector(value: Any) -> list[float] | None:
    """An embedding as floats: a JSON list, or base64 of little-endian float32 (encoding_format)."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return None
        if len(raw) % 4:
            return None
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return None


def _openai(data: dict[str, Any]) -> ParsedOutput:
    custom_id = _custom_id(data)
    err = data.get("error")
    response = _response(data)
    status_code = None
    if isinstance(response, dict) and "body" in response and "status_code" in response:
        status_code = int(response.get("status_code") or 0)
        if status_code >= 400 and not err:
            err = response.get("body") or {"message": f"HTTP {status_code}"}
        response = response.get("body")
    if err:
        text, code = error_text(err)
        return ParsedOutput(custom_id, False, error=text,
                            code=status_code if status_code and status_code >= 400 else code)
    status = data.get("status")
    if not (isinstance(response, dict) and ("data" in response or "choices" in response)) and (
            isinstance(status, str) and status):  # a failure told only in a `status` column
        text, code = status_error(status)
        return ParsedOutput(custom_id, False, error=text, code=code)
    if not isinstance(response, dict):
        return ParsedOutput(custom_id, False, error="no answer in the output row")
    usage = response.get("usage") or {}
    counts = {"input_tokens": int(usage.get("prompt_tokens") or 0),
              "output_tokens": int(usage.get("completion_tokens") or 0)}
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        counts["cached_tokens"] = int(details["cached_tokens"])
    if "data" in response:
        items = response.get("data") or []
        vector = _vector(items[0].get("embedding")) if items and isinstance(items[0], dict) \
            else None
        if vector is None:
            return ParsedOutput(custom_id, False, error="embedding missing from the output")
        return ParsedOutput(custom_id, True, output=vector, usage=counts)
    choices = response.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ParsedOutput(custom_id, False, error="no choices in the output row")
    message = choices[0].get("message") or {}
    text = message.get("content") or ""
    calls = [{"name": (c.get("function") or {}).get("name"),
              "input": (c.get("function") or {}).get("arguments")}
             for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    if calls:
        return ParsedOutput(custom_id, True, output={"text": text, "tool_calls": calls},
                            usage=counts)
    if not str(text).strip():
        reason = choices[0].get("finish_reason")
        why = ("content: null" if message.get("content") is None
               else f"finish_reason: {reason}" if reason else "empty content")
        return ParsedOutput(custom_id, False, error=empty(why), usage=counts)
    return ParsedOutput(custom_id, True, output=text, usage=counts)


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_line(line: bytes | str | dict[str, Any], family: Family) -> ParsedOutput:
    """One output line (or BigQuery output row as a dict) -> ParsedOutput; never raises."""
    try:
        data = line if isinstance(line, dict) else orjson.loads(line)
    except orjson.JSONDecodeError:
        raw = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
        return ParsedOutput(None, False, error=f"unreadable output line: {raw[:RAW_KEEP]}")
    if not isinstance(data, dict):
        return ParsedOutput(None, False, error=f"unexpected output line: {str(data)[:RAW_KEEP]}")
    try:
        if family is Family.CLAUDE:
            return _claude(data)
        if family is Family.GEMINI:
            return gemini.parse(data, _response(data))
        if family is Family.GEMINI_EMBEDDINGS:
            return gemini.parse_embedding(data, _response(data))
        return _openai(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raw = json.dumps(data, ensure_ascii=False)[:RAW_KEEP]
        custom_id = (gemini.row_id(data) if family in (Family.GEMINI, Family.GEMINI_EMBEDDINGS)
                     else _custom_id(data))
        return ParsedOutput(custom_id, False, error=f"unexpected output shape ({exc}): {raw}")
