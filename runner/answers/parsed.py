"""What a parsed output line is, and how the services write an error's code and text: shared by
every family's parser (outputs.py, gemini.py). Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from runner.rpc import Code


@dataclass(frozen=True, slots=True)
class ParsedOutput:
    custom_id: str | None
    ok: bool
    output: Any = None  # text, or the embedding vector
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)  # input_tokens, output_tokens
    code: int | None = None  # the error's HTTP status or google.rpc code, when the line says one


_PHRASES = {s.phrase.lower(): s.value for s in HTTPStatus} | {"unavailable": 503}
# Names the services write where a status code would be, read as the code they stand for, so the
# fault table judges an error by what it is, not by its words. Anthropic's error types (its
# Errors page: type -> HTTP status), OpenAI's batch and error codes, and google.rpc status names.
_NAMED: Final = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
    "rate_limit_error": 429, "api_error": 500, "timeout_error": 504, "overloaded_error": 529,
    # OpenAI batch output: expired or cancelled before the request ran; the model call timed out.
    "batch_expired": Code.DEADLINE_EXCEEDED, "batch_cancelled": Code.CANCELLED,
    "request_timeout": 408, "rate_limit_exceeded": 429, "server_error": 500,
} | {code.name: code.value for code in Code}


def _int_code(value: Any) -> int | None:
    """A status code as the line gives it: a number, digits, or a name that stands for one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, str):
        named = _NAMED.get(value) or _NAMED.get(value.upper())
        return int(named) if named is not None else None
    return None


def _first_code(*values: Any) -> int | None:
    return next((c for c in map(_int_code, values) if c is not None), None)


def status_error(status: str) -> tuple[str, int | None]:
    """"Bad Request: {json}" or "RESOURCE_EXHAUSTED error occurred: {json}" -> the inner message
    and its code; any other text stays as it is (with the code its head names, if any)."""
    head, _, rest = status.partition(": ")
    first = head.strip().split(" ", 1)[0]
    code = _PHRASES.get(head.strip().lower()) or (
        _int_code(first) if first.isdigit() or first.isupper() else None)
    try:
        inner = json.loads(rest) if rest.startswith("{") else None
    except ValueError:
        inner = None
    if isinstance(inner, dict):
        err = inner.get("error", inner)
        if isinstance(err, dict):
            message = err.get("message") or json.dumps(err)
            label = err.get("code") or err.get("type")
            return (f"{head}: {message}" + (f" ({label})" if label else ""),
                    _first_code(err.get("code"), err.get("status"), err.get("type")) or code)
    return status, code


def error_text(err: Any) -> tuple[str, int | None]:
    if isinstance(err, dict) and isinstance(err.get("error"), dict | str):
        return error_text(err["error"])  # an OpenAI or Anthropic body: {"error": {...}}
    if isinstance(err, dict):
        message = err.get("message") or json.dumps(err, ensure_ascii=False)
        code = err.get("code") or err.get("status") or err.get("type")
        return ((f"{message} ({code})" if code else str(message)),
                _first_code(err.get("code"), err.get("status"), err.get("type")))
    return str(err), None


def empty(why: str) -> str:
    return f"the model returned no answer ({why})"
