"""Tolerant output parsing: every documented and inferred line shape (reference §9-§11); unknown
shapes become failed rows with the raw text kept, never a crash."""

from __future__ import annotations

import pytest

from runner.backends.vertex.jobs import parse_job
from runner.outputs import parse_line
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
