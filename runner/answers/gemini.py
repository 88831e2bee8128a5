"""Gemini's batch output rows -> ParsedOutput, pure and tolerant (shared/reference/
gemini-batch-protocol.md §3-§4): `status` "" and a GenerateContentResponse, or `status` "Bad
Request: {...}" and no response; the id is the extra key batchrun sent (rows/wireid.py).

The answer is the text of the first candidate's parts that are not thoughts; thought parts are
kept out of it (their tokens are counted, and billed as output). Never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from runner.answers.parsed import ParsedOutput, empty, status_error
from runner.rows import wireid

# finishReason in plain words (GENAI types.FinishReason). STOP and MAX_TOKENS end an answer the
# row keeps; the rest, with no text, are the row's refusal.
FINISH_REASONS: Final = {
    "STOP": "the answer ended naturally",
    "MAX_TOKENS": "the answer reached maxOutputTokens (thinking tokens count against it)",
    "SAFETY": "a safety filter stopped the answer",
    "RECITATION": "the answer was stopped for reciting training data",
    "LANGUAGE": "the answer was in a language the model does not serve",
    "BLOCKLIST": "the answer held a term of a blocklist",
    "PROHIBITED_CONTENT": "the answer was stopped for prohibited content",
    "SPII": "the answer was stopped for sensitive personal information",
    "MALFORMED_FUNCTION_CALL": "the model wrote a function call that does not parse",
    "UNEXPECTED_TOOL_CALL": "the model called a tool no request declared",
    "TOO_MANY_TOOL_CALLS": "the model called tools too many times",
    "OTHER": "the model stopped for a reason it does not name",
}


def _usage(meta: Mapping[str, Any]) -> dict[str, int]:
    """Tokens as Gemini counts them: thoughts are billed as output, beside the candidates' own;
    cached tokens are a part of the prompt's. totalTokenCount is sometimes missing: not read."""
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    counts = {"input_tokens": int(meta.get("promptTokenCount") or 0),
              "output_tokens": int(meta.get("candidatesTokenCount") or 0) + thoughts}
    if thoughts:
        counts["thoughts_tokens"] = thoughts
    if meta.get("cachedContentTokenCount") is not None:
        counts["cached_tokens"] = int(meta["cachedContentTokenCount"])
    return counts


def _reason(reason: Any) -> str:
    words = FINISH_REASONS.get(str(reason))
    return f"finishReason {reason}" + (f": {words}" if words else "")


def parse(data: Mapping[str, Any], response: Any) -> ParsedOutput:
    """One Gemini output row; `response` is its response as an object (BigQuery gives text)."""
    custom_id = wireid.tracked(data.get(wireid.KEY))
    status = data.get("status")
    if status:  # a failed row: "Bad Request: {json}", no response (§3.3)
        text, code = status_error(str(status))
        return ParsedOutput(custom_id, False, error=text, code=code)
    if not isinstance(response, Mapping):
        return ParsedOutput(custom_id, False, error="no answer in the output row")
    usage = _usage(response.get("usageMetadata") or {})
    candidates = [c for c in response.get("candidates") or () if isinstance(c, Mapping)]
    if not candidates:
        feedback = response.get("promptFeedback") or {}
        blocked = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
        why = (f"the prompt was blocked, promptFeedback.blockReason {blocked}"
               + (f": {feedback['blockReasonMessage']}" if feedback.get("blockReasonMessage")
                  else "") if blocked else "no candidates")
        return ParsedOutput(custom_id, False, error=empty(why), usage=usage)
    first = candidates[0]
    content = first.get("content")
    parts = [p for p in (content.get("parts") or () if isinstance(content, Mapping) else ())
             if isinstance(p, Mapping)]
    text = "".join(str(p.get("text") or "") for p in parts if not p.get("thought"))
    calls = [{"name": p["functionCall"].get("name"), "input": p["functionCall"].get("args")}
             for p in parts if isinstance(p.get("functionCall"), Mapping)]
    if calls:
        return ParsedOutput(custom_id, True, output={"text": text, "tool_calls": calls},
                            usage=usage)
    if not text.strip():
        reason = first.get("finishReason")
        return ParsedOutput(custom_id, False, usage=usage, error=empty(
            _reason(reason) if reason else "no text in the answer"))
    return ParsedOutput(custom_id, True, output=text, usage=usage)
