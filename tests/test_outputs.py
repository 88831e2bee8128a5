"""Tolerant output parsing: every documented and inferred line shape (reference §9-§11); unknown
shapes become failed rows with the raw text kept, never a crash."""

from __future__ import annotations

import pytest

from runner.answers.outputs import parse_line
from runner.backends.vertex.jobs import parse_job
from runner.spec import Family

CLAUDE_OK = (b'{"custom_id": "request-1", "request": {}, "status": "", "processed_time": "x", '
             b'"response": {"id": "msg_vrtx_01", "type": "message", "role": "assistant", '
             b'"content": [{"type": "text", "text": "Hello!"}], "stop_reason": "end_turn", '
             b'"usage": {"input_tokens": 9, "output_tokens": 12}}}')
CLAUDE_FAIL = (b'{"custom_id": "request-2", "status": "Bad Request: {\\"error\\": {\\"code\\": 400, '
               b'\\"message\\": \\"messages.0.role: Input should be user\\", \\"status\\": '
               b'\\"INVALID_ARGUMENT\\"}}", "response": {}}')
CLAUDE_ANTHROPIC_FAIL = (b'{"custom_id": "r3", "status": "Bad Request: {\\"type\\": \\"error\\", '
                         b'\\"error\\": {\\"type\\": \\"invalid_request_error\\", \\"message\\": '
                         b'\\"too long\\"}}", "response": null}')
OPENAI_OK = (b'{"id": "u", "custom_id": "t0", "response": {"object": "chat.completion", "choices": '
             b'[{"index": 0, "message": {"role": "assistant", "content": "Bread"}}], "usage": '
             b'{"prompt_tokens": 12, "completion_tokens": 240}}, "error": null}')
OPENAI_WRAPPED = (b'{"custom_id": "t1", "response": {"status_code": 200, "body": {"choices": [{'
                  b'"message": {"content": "Wrapped"}}]}}}')
OPENAI_WRAPPED_FAIL = (b'{"custom_id": "t2", "response": {"status_code": 429, "body": {"error": '
                       b'{"message": "rate"}}}}')
OPENAI_FAIL_OBJ = b'{"custom_id": "t3", "response": null, "error": {"code": 400, "message": "bad max"}}'
OPENAI_FAIL_STR = b'{"custom_id": "t4", "response": null, "error": "quota exceeded"}'
EMBED_OK = (b'{"custom_id": "e0", "response": {"object": "list", "data": [{"embedding": '
            b'[0.1, -0.2]}], "usage": {"prompt_tokens": 4}}, "error": null}')


@pytest.mark.parametrize(("line", "family", "ok", "output", "error"), [
    (CLAUDE_OK, Family.CLAUDE, True, "Hello!", None),
    (CLAUDE_FAIL, Family.CLAUDE, False, None,
     "Bad Request: messages.0.role: Input should be user (400)"),
    (CLAUDE_ANTHROPIC_FAIL, Family.CLAUDE, False, None,
     "Bad Request: too long (invalid_request_error)"),
    ({"custom_id": "bq", "response": '{"content": [{"type": "text", "text": "from bq"}]}',
      "status": ""}, Family.CLAUDE, True, "from bq", None),
    ({"custom_id": "bq2", "response": None, "status": None}, Family.CLAUDE, False, None,
     "no answer in the output row"),
    (OPENAI_OK, Family.OPENAI_CHAT, True, "Bread", None),
    (OPENAI_WRAPPED, Family.OPENAI_CHAT, True, "Wrapped", None),
    (OPENAI_WRAPPED_FAIL, Family.OPENAI_CHAT, False, None, "rate"),
    (OPENAI_FAIL_OBJ, Family.OPENAI_CHAT, False, None, "bad max (400)"),
    (OPENAI_FAIL_STR, Family.OPENAI_CHAT, False, None, "quota exceeded"),
    (EMBED_OK, Family.OPENAI_EMBEDDINGS, True, [0.1, -0.2], None),
])
def test_output_shapes(line, family, ok, output, error) -> None:  # type: ignore[no-untyped-def]
    parsed = parse_line(line, family)
    assert (parsed.ok, parsed.output, parsed.error) == (ok, output, error)


@pytest.mark.parametrize("line", [b'{"custom_id": "x", "respo', b"[1, 2]", b'"text"',
                                  b'{"custom_id": "y", "response": {"choices": "nope"}}'])
def test_unknown_shapes_fail_the_row_and_keep_the_text(line: bytes) -> None:
    parsed = parse_line(line, Family.OPENAI_CHAT)
    assert not parsed.ok and parsed.error


def test_usage_is_read_per_family() -> None:
    assert parse_line(CLAUDE_OK, Family.CLAUDE).usage == {"input_tokens": 9, "output_tokens": 12}
    assert parse_line(OPENAI_OK, Family.OPENAI_CHAT).usage == {"input_tokens": 12,
                                                               "output_tokens": 240}


def test_job_json_every_field_optional_and_int64_strings() -> None:
    job = parse_job({"name": "projects/123/locations/us-east5/batchPredictionJobs/9",
                     "state": "JOB_STATE_SUCCEEDED",
                     "completionStats": {"successfulCount": "998", "failedCount": "2"},
                     "outputInfo": {"gcsOutputDirectory": "gs://b/o/prediction-model-2026"}})
    assert (job.succeeded_count, job.failed_count) == (998, 2)
    assert job.output_uri == "gs://b/o/prediction-model-2026"
    assert parse_job({"name": "n", "state": 5}).state.short == "failed"  # integer enums
    assert parse_job({"name": "n", "state": "JOB_STATE_FROM_THE_FUTURE"}).state.in_flight
    bare = parse_job({})
    assert bare.labels == {} and bare.output_uri is None and bare.succeeded_count is None
    bq = parse_job({"name": "n", "state": "JOB_STATE_SUCCEEDED",
                    "outputInfo": {"bigqueryOutputDataset": "bq://p.d", "bigqueryOutputTable": "t"}})
    assert bq.output_uri == "bq://p.d.t"


# --- issue 10: codes for the fault table, ids found inside, empty answers, tools, base64 ----------

def _claude(response: object, **extra: object) -> bytes:
    import json

    return json.dumps({"custom_id": "c1", "status": "", "response": response, **extra}).encode()


def test_error_lines_carry_their_code_so_the_fault_table_can_judge() -> None:
    from runner.answers.fault import Fault, fault_of

    cases = [(CLAUDE_FAIL, Family.CLAUDE, 400, Fault.ROW),
             (OPENAI_WRAPPED_FAIL, Family.OPENAI_CHAT, 429, Fault.INFRA),
             (OPENAI_FAIL_OBJ, Family.OPENAI_CHAT, 400, Fault.ROW),
             (OPENAI_FAIL_STR, Family.OPENAI_CHAT, None, Fault.INFRA),  # quota: never the row's
             (b'{"custom_id": "x", "status": "Service Unavailable: {\\"error\\": {\\"message\\": '
              b'\\"try later\\"}}", "response": {}}', Family.CLAUDE, 503, Fault.INFRA),
             (b'{"custom_id": "x", "response": null, "error": {"code": 13, "message": "INTERNAL"}}',
              Family.OPENAI_CHAT, 13, Fault.INFRA)]
    for line, family, code, fault in cases:
        parsed = parse_line(line, family)
        assert (parsed.ok, parsed.code) == (False, code), line
        assert fault_of(parsed.code, parsed.error or "") is fault, line


def test_a_line_without_a_top_level_id_is_matched_through_the_request() -> None:
    line = (b'{"request": {"custom_id": "inner", "method": "POST", "body": {}}, "response": '
            b'{"choices": [{"message": {"content": "ok"}}]}}')
    assert parse_line(line, Family.OPENAI_CHAT).custom_id == "inner"


@pytest.mark.parametrize(("response", "why"), [
    ({"content": [], "stop_reason": "max_tokens", "usage": {"output_tokens": 10}},
     "stop_reason: max_tokens"),
    ({"content": None, "stop_reason": "end_turn"}, "content: null"),
    ({"content": [{"type": "text", "text": "  "}]}, "empty content"),
])
def test_an_empty_answer_is_the_rows_failure_and_says_why(response: object, why: str) -> None:
    parsed = parse_line(_claude(response), Family.CLAUDE)
    assert not parsed.ok and parsed.error == f"the model returned no answer ({why})"


def test_tool_use_blocks_are_kept() -> None:
    parsed = parse_line(_claude({"content": [
        {"type": "text", "text": "Looking it up."},
        {"type": "tool_use", "id": "t", "name": "lookup", "input": {"q": "x"}}],
        "stop_reason": "tool_use"}), Family.CLAUDE)
    assert parsed.ok and parsed.output == {"text": "Looking it up.", "tool_calls": [
        {"name": "lookup", "input": {"q": "x"}}]}
    openai = (b'{"custom_id": "o", "response": {"choices": [{"message": {"content": null, '
              b'"tool_calls": [{"type": "function", "function": {"name": "f", "arguments": '
              b'"{\\"a\\": 1}"}}]}}]}}')
    parsed = parse_line(openai, Family.OPENAI_CHAT)
    assert parsed.ok and parsed.output == {"text": "", "tool_calls": [
        {"name": "f", "input": '{"a": 1}'}]}


def test_base64_embeddings_are_decoded() -> None:
    import base64
    import struct

    raw = base64.b64encode(struct.pack("<3f", 0.5, -1.0, 0.25)).decode()
    line = (b'{"custom_id": "e", "response": {"data": [{"embedding": "' + raw.encode()
            + b'"}]}}')
    parsed = parse_line(line, Family.OPENAI_EMBEDDINGS)
    assert parsed.ok and parsed.output == [0.5, -1.0, 0.25]
