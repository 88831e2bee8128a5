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
# row keeps; one stopped by a filter (STOPPED) is the row's refusal, whatever text came first.
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


STOPPED: Final = frozenset({"SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT",
                           "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT",
                           "IMAGE_RECITATION"})


def _count(value: Any) -> int:
    """A token count as the row gives it (a number, or digits): anything else counts 0, so an
    odd usage block never turns an answer into a failure."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value)
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def _usage(meta: Any) -> dict[str, int]:
    """Tokens as Gemini counts them: thoughts are billed as output, beside the candidates' own;
    cached tokens are a part of the prompt's. totalTokenCount is sometimes missing: not read."""
    meta = meta if isinstance(meta, Mapping) else {}
    thoughts = _count(meta.get("thoughtsTokenCount"))
    counts = {"input_tokens": _count(meta.get("promptTokenCount")),
              "output_tokens": _count(meta.get("candidatesTokenCount")) + thoughts}
    if thoughts:
        counts["thoughts_tokens"] = thoughts
    if meta.get("cachedContentTokenCount") is not None:
        counts["cached_tokens"] = _count(meta["cachedContentTokenCount"])
    return counts


def row_id(data: Mapping[str, Any]) -> str | None:
    """The id batchrun sent, wherever the row's model carries it: `custom_id`, gemini-embedding's
    `key`, or the older embedding models' echoed `instance`."""
    sent = data.get("key") if data.get("key") is not None else data.get(wireid.KEY)
    instance = data.get("instance")
    if sent is None and isinstance(instance, Mapping):
        sent = instance.get(wireid.KEY)
    return wireid.tracked(sent)


def _reason(reason: Any) -> str:
    words = FINISH_REASONS.get(str(reason))
    return f"finishReason {reason}" + (f": {words}" if words else "")


def parse(data: Mapping[str, Any], response: Any) -> ParsedOutput:
    """One Gemini output row; `response` is its response as an object (BigQuery gives text)."""
    custom_id = row_id(data)
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
    reason = first.get("finishReason")
    if str(reason) in STOPPED:  # a filter cut it: what came before is no answer to keep
        cut = f"; {len(text)} characters came before it stopped" if text else ""
        return ParsedOutput(custom_id, False, usage=usage, error=empty(_reason(reason) + cut))
    if not text.strip():
        return ParsedOutput(custom_id, False, usage=usage, error=empty(
            _reason(reason) if reason else "no text in the answer"))
    return ParsedOutput(custom_id, True, output=text, usage=usage)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def parse_embedding(data: Mapping[str, Any], response: Any) -> ParsedOutput:
    """One Gemini embedding output row: gemini-embedding-*'s `key` and response.embedding.values
    (inferred: no page shows the row), or the older models' `instance` (carrying the id sent)
    and predictions[0].embeddings.values (§5.2)."""
    custom_id = row_id(data)
    status = data.get("status")
    if status:
        text, code = status_error(str(status))
        return ParsedOutput(custom_id, False, error=text, code=code)
    body = response if isinstance(response, Mapping) else {}
    embedding = body.get("embedding") or _first(body.get("embeddings"))
    prediction = _first(data.get("predictions") or body.get("predictions"))
    if embedding is None and isinstance(prediction, Mapping):
        embedding = prediction.get("embeddings")
    values = embedding.get("values") if isinstance(embedding, Mapping) else None
    if not isinstance(values, list) or not values:
        return ParsedOutput(custom_id, False, error="embedding missing from the output")
    meta = body.get("usageMetadata") or {}
    stats = embedding.get("statistics") if isinstance(embedding, Mapping) else None
    tokens = (meta.get("promptTokenCount") if isinstance(meta, Mapping) else None) or body.get(
        "tokenCount") or (stats.get("token_count") if isinstance(stats, Mapping) else None)
    return ParsedOutput(custom_id, True, output=[float(v) for v in values],
                        usage={"input_tokens": _count(tokens), "output_tokens": 0})
