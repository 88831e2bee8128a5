"""Tolerant parsing of Vertex output lines (reference §9-§11) into one result shape. Pure.

Every documented and inferred shape is accepted; an unknown shape becomes a failed row with the
raw text kept, never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from runner.spec import Family

RAW_KEEP = 2000  # characters of an unparseable line kept in the error


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    custom_id: str | None
    ok: bool
    output: Any = None  # text, or the embedding vector
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)  # input_tokens, output_tokens


def _status_error(status: str) -> str:
    """"Bad Request: {json}" -> the inner message; any other text stays as it is."""
    head, _, rest = status.partition(": ")
    try:
        inner = json.loads(rest) if rest.startswith("{") else None
    except ValueError:
        inner = None
    if isinstance(inner, dict):
        err = inner.get("error", inner)
        if isinstance(err, dict):
            message = err.get("message") or json.dumps(err)
            code = err.get("code") or err.get("type")
            return f"{head}: {message}" + (f" ({code})" if code else "")
    return status


def _error_text(err: Any) -> str:
    if isinstance(err, dict) and isinstance(err.get("error"), dict | str):
        return _error_text(err["error"])  # an OpenAI-style body: {"error": {...}}
    if isinstance(err, dict):
        message = err.get("message") or json.dumps(err, ensure_ascii=False)
        code = err.get("code") or err.get("status")
        return f"{message} ({code})" if code else str(message)
    return str(err)


def _response(data: dict[str, Any]) -> Any:
    """`response` as an object: BigQuery output tables may hand it over as JSON text."""
    response = data.get("response")
    if isinstance(response, str):
        try:
            return json.loads(response)
        except ValueError:
            return None
    return response


def _claude(data: dict[str, Any]) -> ParsedOutput:
    custom_id = data.get("custom_id")
    status = data.get("status") or ""
    response = _response(data)
    if status:
        return ParsedOutput(_id(custom_id), False, error=_status_error(str(status)))
    if not isinstance(response, dict) or "content" not in response:
        return ParsedOutput(_id(custom_id), False, error="no answer in the output row")
    blocks = response.get("content") or []
    text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict)
                   and b.get("type", "text") == "text")
    usage = response.get("usage") or {}
    return ParsedOutput(_id(custom_id), True, output=text, usage={
        "input_tokens": int(usage.get("input_tokens") or 0),
        "output_tokens": int(usage.get("output_tokens") or 0)})


def _openai(data: dict[str, Any]) -> ParsedOutput:
    custom_id = data.get("custom_id")
    err = data.get("error")
    response = _response(data)
    if isinstance(response, dict) and "body" in response and "status_code" in response:
        if int(response.get("status_code") or 0) >= 400 and not err:
            err = response.get("body")
        response = response.get("body")
    if err:
        return ParsedOutput(_id(custom_id), False, error=_error_text(err))
    if not isinstance(response, dict):
        return ParsedOutput(_id(custom_id), False, error="no answer in the output row")
    usage = response.get("usage") or {}
    counts = {"input_tokens": int(usage.get("prompt_tokens") or 0),
              "output_tokens": int(usage.get("completion_tokens") or 0)}
    if "data" in response:
        items = response.get("data") or []
        vector = items[0].get("embedding") if items and isinstance(items[0], dict) else None
        if not isinstance(vector, list):
            return ParsedOutput(_id(custom_id), False, error="embedding missing from the output")
        return ParsedOutput(_id(custom_id), True, output=vector, usage=counts)
    choices = response.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ParsedOutput(_id(custom_id), False, error="no choices in the output row")
    message = choices[0].get("message") or {}
    return ParsedOutput(_id(custom_id), True, output=message.get("content") or "", usage=counts)


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
        return _openai(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raw = json.dumps(data, ensure_ascii=False)[:RAW_KEEP]
        return ParsedOutput(_id(data.get("custom_id")), False,
                            error=f"unexpected output shape ({exc}): {raw}")
