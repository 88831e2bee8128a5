"""Whose failure a row error is, by what it is (issue 23): every public shape of a row error, one
line each, read by parse_line and judged by the one fault table, through collect — two jobs
answering the same row the same way, so the attempts a shape spends are counted. Infrastructure
(and credentials) spend none: the row is simply to do again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.answers.collect import Tally, fold, result_rows
from runner.answers.fault import Fault, fault_of
from runner.answers.outputs import parse_line
from runner.backends.base import IndexEntry
from runner.models import catalog
from runner.spec import (
    DestinationKind,
    DestinationSpec,
    Family,
    Manifest,
    PromptSpec,
    SourceKind,
    SourceSpec,
    Task,
    Template,
)

CLAUDE = "anthropic/claude-haiku-4-5@20251001"
OPEN = "meta/llama-4-maverick-17b-128e-instruct-maas"


def manifest(family: Family) -> Manifest:
    model = catalog.parse_model(CLAUDE if family is Family.CLAUDE else OPEN)
    assert model is not None
    return Manifest(name="m", file=Path("m.yaml"), line=1, model=model, task=Task.CHAT,
                    family=family, parameters={"max_tokens": 5},
                    source=SourceSpec(SourceKind.FILE, "x.jsonl", "jsonl", "id"),
                    prompt=PromptSpec(user=Template("{{ t }}", "user")),
                    destination=DestinationSpec(DestinationKind.FILE, "out.jsonl", "out.jsonl"))


def google(code: int, message: str, status: str) -> str:
    return json.dumps({"error": {"code": code, "message": message, "status": status}})


def anthropic(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def claude_status(status: str) -> dict[str, Any]:
    return {"custom_id": "r1", "status": status, "response": {}}


def claude_body(body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": "r1", "status": "", "response": body}


def openai_error(error: Any) -> dict[str, Any]:
    return {"id": "b-1", "custom_id": "r1", "response": None, "error": error}


def openai_wrapped(status_code: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": "b-1", "custom_id": "r1", "response": {"status_code": status_code, "body": body},
            "error": None}


C, OA = Family.CLAUDE, Family.OPENAI_CHAT
ROW, INFRA, AUTH = Fault.ROW, Fault.INFRA, Fault.AUTH

# (what it is, family, output line, whose fault, a word the stored error keeps)
SHAPES = [
    # Google-style `status` column (Claude and Gemini pages: "Bad Request: {json}")
    ("status: Bad Request with a Google error", C,
     claude_status("Bad Request: " + google(400, "messages.0.role: Input should be 'user' or "
                                                 "'assistant'", "INVALID_ARGUMENT")), ROW, "role"),
    ("status: Bad Request with an Anthropic error", C,
     claude_status("Bad Request: " + json.dumps(anthropic("invalid_request_error",
                                                          "max_tokens: must be positive"))),
     ROW, "max_tokens"),
    ("status: RESOURCE_EXHAUSTED error occurred, code inside", C,
     claude_status("RESOURCE_EXHAUSTED error occurred: " + google(
         429, "Resource exhausted, please try again later.", "RESOURCE_EXHAUSTED")),
     INFRA, "exhausted"),
    ("status: RESOURCE_EXHAUSTED error occurred, no code inside", C,
     claude_status('RESOURCE_EXHAUSTED error occurred: {"error": {"message": "Quota exceeded"}}'),
     INFRA, "Quota"),
    ("status: INTERNAL error occurred", C,
     claude_status("INTERNAL error occurred: " + google(500, "Internal error encountered.",
                                                        "INTERNAL")), INFRA, "Internal"),
    ("status: Internal error encountered, no code", C,
     claude_status("Internal error encountered."), INFRA, "Internal"),
    ("status: An internal error has occurred, no code", C,
     claude_status("An internal error has occurred."), INFRA, "internal"),
    ("status: Service Unavailable", C,
     claude_status("Service Unavailable: " + google(503, "The service is currently unavailable.",
                                                    "UNAVAILABLE")), INFRA, "unavailable"),
    ("status: DEADLINE_EXCEEDED by name", C,
     claude_status("DEADLINE_EXCEEDED: Deadline expired before operation could complete."),
     INFRA, "Deadline"),
    ("status: Too Many Requests", C,
     claude_status("Too Many Requests: " + google(429, "Quota exceeded for aiplatform."
                                                       "googleapis.com", "RESOURCE_EXHAUSTED")),
     INFRA, "Quota"),
    ("status: Unauthorized", C,
     claude_status("Unauthorized: " + google(401, "Request had invalid authentication "
                                                  "credentials.", "UNAUTHENTICATED")),
     AUTH, "credentials"),
    # Anthropic error bodies in `response` (the Messages API's own shape, 529 and the rest)
    ("Anthropic overloaded_error", C, claude_body(anthropic("overloaded_error", "Overloaded")),
     INFRA, "Overloaded"),
    ("Anthropic api_error", C, claude_body(anthropic("api_error", "Internal server error")),
     INFRA, "Internal"),
    ("Anthropic rate_limit_error", C,
     claude_body(anthropic("rate_limit_error", "Number of request tokens has exceeded your "
                                               "per-minute rate limit")), INFRA, "rate limit"),
    ("Anthropic timeout_error", C, claude_body(anthropic("timeout_error", "Request timed out")),
     INFRA, "timed out"),
    ("Anthropic invalid_request_error", C,
     claude_body(anthropic("invalid_request_error", "prompt is too long: 210000 tokens > "
                                                    "200000 maximum")), ROW, "too long"),
    ("Anthropic request_too_large", C,
     claude_body(anthropic("request_too_large", "Request exceeds the maximum size")),
     ROW, "maximum size"),
    ("Anthropic authentication_error", C,
     claude_body(anthropic("authentication_error", "invalid x-api-key")), AUTH, "x-api-key"),
    ("Anthropic batch result: errored, overloaded", C,
     {"custom_id": "r1", "result": {"type": "errored",
                                    "error": anthropic("overloaded_error", "Overloaded")}},
     INFRA, "Overloaded"),
    ("Anthropic batch result: expired", C,
     {"custom_id": "r1", "result": {"type": "expired"}}, INFRA, "expired"),
    # OpenAI batch output errors (open models)
    ("OpenAI batch_expired", OA,
     openai_error({"code": "batch_expired", "message": "This request could not be executed "
                                                       "before the completion window expired."}),
     INFRA, "completion window"),
    ("OpenAI batch_cancelled", OA,
     openai_error({"code": "batch_cancelled", "message": "This request was cancelled."}),
     INFRA, "cancelled"),
    ("OpenAI request_timeout", OA,
     openai_error({"code": "request_timeout", "message": "The model call timed out."}),
     INFRA, "timed out"),
    ("OpenAI rate_limit_exceeded", OA,
     openai_error({"code": "rate_limit_exceeded", "message": "Rate limit reached"}),
     INFRA, "Rate limit"),
    ("OpenAI google.rpc 13", OA, openai_error({"code": 13, "message": "INTERNAL"}),
     INFRA, "INTERNAL"),
    ("OpenAI error text: Internal error encountered.", OA,
     openai_error("Internal error encountered."), INFRA, "Internal"),
    ("OpenAI wrapped 400 invalid_request_error", OA,
     openai_wrapped(400, {"error": {"message": "max_tokens is too large", "type":
                                    "invalid_request_error"}}), ROW, "max_tokens"),
    ("OpenAI wrapped 500 server_error", OA,
     openai_wrapped(500, {"error": {"message": "The server had an error", "type":
                                    "server_error"}}), INFRA, "server"),
    ("OpenAI 400 with a status only", OA,
     {"custom_id": "r1", "status": "Bad Request: " + google(400, "Invalid JSON payload "
                                                                "received.", "INVALID_ARGUMENT"),
      "response": {}}, ROW, "Invalid JSON payload"),
    ("OpenAI RESOURCE_EXHAUSTED with a status only", OA,
     {"custom_id": "r1", "status": "RESOURCE_EXHAUSTED error occurred: " + google(
         429, "Resource exhausted", "RESOURCE_EXHAUSTED"), "response": {}},
     INFRA, "exhausted"),
    # the row's own: an answer that is empty or of an unexpected shape, and unknown texts
    ("an empty answer", C,
     claude_body({"type": "message", "content": [], "stop_reason": "max_tokens"}),
     ROW, "no answer"),
    ("an answer of an unexpected shape quoting infrastructure words", C,
     claude_body({"content": 5, "note": "the server is overloaded, internal error"}),
     ROW, "unexpected output shape"),
    ("an unknown text without a code", OA, openai_error("something odd about this one"),
     ROW, "something odd"),
]


def collect_twice(family: Family, line: dict[str, Any]) -> tuple[dict[str, Any] | None, Tally]:
    """Two jobs answer row r1 with `line`; the row as the destination would keep it."""
    entry = IndexEntry(custom_id="r1", request_hash="h1", passthrough={})
    tally = Tally()
    results = [r for n in (1, 2) for r in result_rows(
        manifest(family), job_name=f"job{n}", job_spec_hash="s1",
        finished_at=f"2026-12-01T00:00:0{n}Z", index=[entry],
        output=[json.dumps(line).encode()], tally=tally)]
    return fold(None, results, "s1"), tally


@pytest.mark.parametrize(("what", "family", "line", "fault", "kept"), SHAPES,
                         ids=[s[0] for s in SHAPES])
def test_each_row_error_shape_is_whose_it_says(what: str, family: Family, line: dict[str, Any],
                                                fault: Fault, kept: str) -> None:
    parsed = parse_line(json.dumps(line).encode(), family)
    assert not parsed.ok and parsed.custom_id == "r1"
    assert fault_of(parsed.code, parsed.error or "") is fault, (parsed.code, parsed.error)
    assert kept.lower() in (parsed.error or "").lower()  # the message is kept, not lost
    row, tally = collect_twice(family, line)
    if fault is Fault.ROW:
        assert row is not None and row["status"] == "failed" and row["attempts"] == 2
        assert kept.lower() in row["error"].lower()
        assert (tally.refused, tally.to_do_again) == (2, 0)
    else:  # no attempt spent: nothing recorded, the row is to do again
        assert row is None
        assert (tally.refused, tally.to_do_again) == (0, 2)


def test_usage_keeps_cache_tokens() -> None:
    claude = parse_line(json.dumps(claude_body({
        "type": "message", "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 900,
                  "cache_creation_input_tokens": 300}})).encode(), Family.CLAUDE)
    assert claude.usage == {"input_tokens": 10, "output_tokens": 2,
                            "cache_read_input_tokens": 900, "cache_creation_input_tokens": 300}
    chat = parse_line(json.dumps({"custom_id": "r1", "response": {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 2,
                  "prompt_tokens_details": {"cached_tokens": 768}}}}).encode(), Family.OPENAI_CHAT)
    assert chat.usage == {"input_tokens": 1000, "output_tokens": 2, "cached_tokens": 768}
    plain = parse_line(json.dumps(claude_body({
        "type": "message", "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 10, "output_tokens": 2}})).encode(), Family.CLAUDE)
    assert plain.usage == {"input_tokens": 10, "output_tokens": 2}  # nothing added when absent
    row, _ = collect_twice(Family.CLAUDE, claude_body({
        "type": "message", "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 900}}))
    assert row is not None and row["usage"]["cache_read_input_tokens"] == 900
