"""Collect, pure: job output + the job's staged index -> result rows, and the merge rule that keeps
every answer. A new answer replaces an old one only for the same id and only when it succeeded;
a failure never overwrites a success, it is kept beside it as `retry` to count attempts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import jsonschema
import orjson

from runner.answers import result
from runner.answers.fault import Fault, fault_of
from runner.answers.outputs import ParsedOutput, parse_line
from runner.answers.result import Status, missing_ledger_fields
from runner.identity import answerer_of
from runner.redact import redact, redact_value
from runner.rows.loaderids import CoercedIds, loader_key
from runner.spec import Manifest

SUCCEEDED = Status.SUCCEEDED.value
FAILED = Status.FAILED.value


def reshaped(manifest: Manifest, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row answered under another spec with the same request, shaped by this manifest's
    response rules from the answer it stored — no model call. An answer the new rules refuse
    keeps its row and records, under this spec, one attempt with why (the next plan sends it)."""
    output = row.get("output")
    raw = row.get("raw") if isinstance(row.get("raw"), str) else (
        output if isinstance(output, str) else orjson.dumps(output).decode())
    parsed = _validated(manifest, ParsedOutput(str(row.get("custom_id")), True, output=raw,
                                               usage=dict(row.get("usage") or {})))
    if not parsed.ok:
        return {**row, "retry": {"spec_hash": manifest.spec_hash,
                                 "request_hash": row.get("request_hash"), "attempts": 1,
                                 "error": parsed.error, "job": row.get("job"),
                                 "finished_at": row.get("finished_at")}}
    return {**row, "output": parsed.output, "spec_hash": manifest.spec_hash,
            "raw": raw if manifest.response.format == "json" else None, "retry": None}


def with_passthrough(row: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The row carrying exactly these passthrough columns (from its source row now), in the
    order result rows have them: after custom_id, before the result fields."""
    fields = {k: v for k, v in row.items() if k in result.ALL_FIELDS}
    return {"custom_id": fields.pop("custom_id", None), **values, **fields}


def _validated(manifest: Manifest, parsed: ParsedOutput) -> ParsedOutput:
    """Parse a text answer as JSON when the manifest asks for it, and check it against the schema."""
    if not parsed.ok or manifest.response.format != "json" or not isinstance(parsed.output, str):
        return parsed
    text = parsed.output.strip()
    if text.startswith("```"):  # models often fence JSON; the fence is not part of the answer
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return ParsedOutput(parsed.custom_id, False, error=f"answer is not JSON ({exc.msg}): "
                            f"{parsed.output[:200]}", usage=parsed.usage)
    if manifest.response.schema is not None:
        try:
            jsonschema.validate(value, dict(manifest.response.schema))
        except jsonschema.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            return ParsedOutput(parsed.custom_id, False, error=f"answer does not match the "
                                f"response schema at {path}: {exc.message}", usage=parsed.usage)
    return ParsedOutput(parsed.custom_id, True, output=value, usage=parsed.usage)


@dataclass
class Tally:
    """What collecting jobs found, for the messages apply prints."""

    answered: int = 0
    refused: int = 0  # the row's own failure: an attempt used
    to_do_again: int = 0  # no line, or an infrastructure error on its line: no attempt used
    unreadable: int = 0  # output lines matching no staged row

    def add(self, other: Tally) -> None:
        for counter in fields(self):
            setattr(self, counter.name, getattr(self, counter.name) + getattr(other, counter.name))


def result_rows(
    manifest: Manifest,
    *,
    job_name: str,
    job_spec_hash: str,
    finished_at: str,
    index: Iterable[Any],
    output: Iterable[bytes | dict[str, Any]],
    tally: Tally | None = None,
    model: str = "",
    answered_by: str = "",
) -> Iterator[dict[str, Any]]:
    """One result row per staged row the output answered or refused, whatever state the job ended
    in, recording who answered (the job's model and answerer). A row with no line, or whose line
    is an infrastructure error (fault.FAULT_RULES), yields nothing: it is to do again and
    none of its attempts is used.

    Both sides stream: outputs usually come in input order, so the index is read in step with
    them and only entries passed over out of order are held; memory follows the disorder, not
    the job's size."""
    tally = tally if tally is not None else Tally()
    pending = iter(index)
    staged: dict[str, Any] = {}
    answered_keys: set[tuple[str, object]] = set()  # loader keys of ids answered (coercible ones)
    coerced: CoercedIds | None = None

    def found(entry: Any) -> Any:
        key = loader_key(entry.custom_id)
        if key is not None:
            answered_keys.add(key)
        return entry

    def find(custom_id: str) -> Any:
        nonlocal coerced
        entry = staged.pop(custom_id, None)
        if entry is not None:
            return found(entry)
        for entry in pending:
            if entry.custom_id == custom_id:
                return found(entry)
            staged[entry.custom_id] = entry
        # No staged row has this id: the importer may have coerced it ("000123" came back as 123).
        # The index is read to its end by now, so every row still unanswered is in `staged`.
        if coerced is None:
            coerced = CoercedIds(list(staged), answered_keys)
        real = coerced.match(custom_id)
        return staged.pop(real, None) if real is not None else None

    def row(entry: Any, parsed: ParsedOutput, raw: str | None) -> dict[str, Any]:
        return result.make(
            custom_id=entry.custom_id,
            passthrough={k: entry.passthrough.get(k) for k in manifest.passthrough},
            ok=parsed.ok, output=redact_value(parsed.output) if parsed.ok else None,
            error=None if parsed.ok else redact(parsed.error or "failed"), usage=parsed.usage,
            model=model or manifest.model.short, answered_by=answered_by,
            spec_hash=job_spec_hash,
            request_hash=entry.request_hash, job=job_name, finished_at=finished_at,
            source_fp=getattr(entry, "source_fp", ""),
            raw=str(redact_value(raw)) if raw is not None and parsed.ok else None)

    for line in output:
        parsed = parse_line(line, manifest.family)
        entry = find(parsed.custom_id) if parsed.custom_id is not None else None
        if entry is None:  # unreadable, or not a row of this job, or a second line for one
            tally.unreadable += 1
            continue
        if not parsed.ok and fault_of(parsed.code, parsed.error or "") is not Fault.ROW:
            tally.to_do_again += 1
            continue
        # The answer as the model gave it, when parsing changes it: a later change of the response
        # block is then re-derived from it (reshape), not paid for again.
        raw = parsed.output if manifest.response.format == "json" and isinstance(
            parsed.output, str) else None
        parsed = _validated(manifest, parsed)
        if parsed.ok:
            tally.answered += 1
        else:
            tally.refused += 1
        yield row(entry, parsed, raw)
    tally.to_do_again += len(staged) + sum(1 for _ in pending)


def looks_like_ours(row: Mapping[str, Any]) -> bool:
    """A destination row batchrun wrote: it carries the ledger fields."""
    return not missing_ledger_fields(row)


def paid(row: Mapping[str, Any]) -> dict[str, int]:
    """Tokens paid for every attempt merged into this row (the answer's own usage if only one)."""
    usage = row.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    total = usage.get("paid")
    total = total if isinstance(total, Mapping) else usage
    return {k: int(total.get(k) or 0) for k in ("input_tokens", "output_tokens")}


def _charged(row: Mapping[str, Any], before: Mapping[str, Any], new: Mapping[str, Any]) -> dict[
        str, Any]:
    """`row` with usage.paid = what `before` had paid plus the attempt `new` paid."""
    # The offline echo executor charges nothing: what it "used" is no bill.
    earlier = {"input_tokens": 0, "output_tokens": 0} if answerer_of(before) == "local echo" else paid(
        before)
    now = paid(new)
    if not any(earlier.values()) and row.get("job") == new.get("job"):
        return dict(row)  # nothing paid before: the new answer's own usage is the whole bill
    total = {k: earlier[k] + now[k] for k in earlier}
    usage = dict(row.get("usage") or {})
    usage["paid"] = total
    return {**row, "usage": usage}


def merge(existing: Mapping[str, Any] | None, new: Mapping[str, Any],
          current_spec: str) -> dict[str, Any] | None:
    """The row to keep for one id, or None to keep `existing` as it is.

    Collecting a job again (a crash between the write and its marker) changes nothing: jobs are
    merged oldest first, so a result older than what the row already reflects is a replay. Every
    attempt merged adds its tokens to usage.paid, so status can count what retries cost.
    """
    if existing is None:
        return dict(new)
    retry = existing.get("retry") or {}
    if new["job"] in (existing.get("job"), retry.get("job")):
        return None
    if new["status"] == SUCCEEDED:
        if existing.get("status") == SUCCEEDED:
            # Prefer an answer of the current spec, then the newer one; never trade down.
            rank_new = (new["spec_hash"] == current_spec, new["finished_at"])
            rank_old = (existing.get("spec_hash") == current_spec, existing.get("finished_at") or "")
            # The losing answer leaves no trace to tell a replay by, so it is not charged.
            return _charged(dict(new), existing, new) if rank_new > rank_old else None
        return _charged(dict(new), existing, new)
    latest = max(existing.get("finished_at") or "", retry.get("finished_at") or "")
    if new["finished_at"] <= latest:
        return None
    # The same request answered by someone else (echo's answer, an endpoint's refusal) is not
    # this target: the refusal counts an attempt beside that answer.
    same_target = (existing.get("spec_hash"), existing.get("request_hash"), answerer_of(existing)) == (
        new["spec_hash"], new["request_hash"], answerer_of(new))
    if existing.get("status") == FAILED:
        attempts = int(existing.get("attempts") or 0) + 1 if same_target else 1
        return _charged({**new, "attempts": attempts}, existing, new)
    if same_target:
        return None  # the answer already stands for this very request
    # A failure next to a success: keep the answer, count the attempt beside it.
    same_retry = (retry.get("spec_hash"), retry.get("request_hash")) == (
        new["spec_hash"], new["request_hash"])
    attempts = int(retry.get("attempts") or 0) + 1 if same_retry else 1
    kept = {**existing, "retry": {"spec_hash": new["spec_hash"],
                                  "request_hash": new["request_hash"], "attempts": attempts,
                                  "error": new["error"], "job": new["job"],
                                  "finished_at": new["finished_at"]}}
    return _charged(kept, existing, new)


def fold(existing: dict[str, Any] | None, updates: Iterable[Mapping[str, Any]],
         current_spec: str) -> dict[str, Any] | None:
    """Merge several results for one id, oldest first."""
    row = existing
    for update in updates:
        merged = merge(row, update, current_spec)
        if merged is not None:
            row = merged
    return row


def merge_rows(existing: Iterable[dict[str, Any]],
               updates: Mapping[str, Sequence[Mapping[str, Any]]],
               current_spec: str,
               appended: Iterable[dict[str, Any]] = ()) -> Iterator[tuple[dict[str, Any], bool]]:
    """Stream the destination through, folding each id's new results in; then the `appended` new
    rows (ids the destination lacks), each folded with any later results for its id; then the ids
    left in `updates`. Yields (row, changed): files rewrite every row, tables MERGE changed ones."""
    merged: set[str] = set()
    for row in existing:
        custom_id = str(row.get("custom_id"))
        if custom_id in updates:
            merged.add(custom_id)
            result = fold(row, updates[custom_id], current_spec)
            yield (row, False) if result is None or result is row else (result, True)
        else:
            yield row, False
    for row in appended:
        custom_id = str(row.get("custom_id"))
        later = updates.get(custom_id)
        if later is not None:
            merged.add(custom_id)
            yield fold(row, later, current_spec) or row, True
        else:
            yield row, True
    for custom_id, items in updates.items():
        if custom_id not in merged:
            result = fold(None, items, current_spec)
            if result is not None:
                yield result, True
