"""The fake Vertex AI service: jobs in v1 JSON shapes, the state machine, the list filter and paging,
cancel and delete, and every fault of DESIGN §7 on demand. HTTP lives in fakevertex/routes.py."""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from runner.backends.local.executors import echo, echo_json
from runner.devtools.fakevertex import importer, io
from runner.devtools.fakevertex.filters import FilterError, compile_filter
from runner.devtools.fakevertex.validate import ApiError, validate
from runner.spec import ExecutorSpec, Family

IN_FLIGHT = {"JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"}


@dataclass
class Faults:
    first_job_internal: bool = False  # the first job in a region fails with code 13 INTERNAL
    internal_jobs: int = 0  # the next N jobs to start fail with code 13 INTERNAL
    max_concurrent: int = 4
    quota_mode: str = "reject"  # "reject": 429 on the create past the quota; "queue": JOB_STATE_QUEUED
    # Next creates fail: "500", "429", or "500-after"/"drop-after" once the job exists (ambiguous).
    create_errors: list[str] = field(default_factory=list)
    drop_connections: int = 0  # next N requests are closed without an answer
    malformed: int = 0  # next N GETs answer with a body that is not JSON
    slow_seconds: float = 0.0
    pending_seconds: float = 0.0
    run_seconds: float = 0.0
    expire_after: float | None = None  # a job still pending after this many seconds expires
    # A running job ends EXPIRED after answering this many rows, and writes those out (the newer
    # Claude page: results are readable "after all rows finish or after 24 hours").
    expire_after_rows: int | None = None
    partial_success: bool = False  # a job with failed rows ends PARTIALLY_SUCCEEDED
    fail_rows: list[str] = field(default_factory=list)  # custom_ids that fail inside the job
    # Per-row infrastructure errors inside a job that succeeds (429 RESOURCE_EXHAUSTED on a line).
    busy_rows: list[str] = field(default_factory=list)
    cancelled_output: bool = False  # Gemini keeps partial output; partner models leave none
    cancel_after_rows: int = 0  # with cancelled_output: rows answered before a cancel lands
    cancelling_seconds: float = 0.0  # how long CANCELLING lasts
    cancel_ends: str = "JOB_STATE_CANCELLED"  # or JOB_STATE_SUCCEEDED: the job finished anyway
    truncate_output: bool = False  # cut the output file mid-line
    drop_output_rows: list[str] = field(default_factory=list)
    page_size_max: int = 50
    # The real filter parser's reading of "-" inside a label key is unverified (AIP-160 uses "-"
    # for negation): with this on, any filter naming a label is refused with 400 INVALID_ARGUMENT.
    refuse_label_filter: bool = False
    # The Vertex AI API is not enabled in the project: every call answers 403 PERMISSION_DENIED
    # with the google.rpc.ErrorInfo reason SERVICE_DISABLED, as Google does.
    service_disabled: bool = False
    # The importer guesses JSON types (a Gemini batch note: "000000" came back as 0): ids that look
    # like numbers or booleans come back as such in the output.
    coerce_ids: bool = False
    # The next Gemini job fails at import (code 3) with this detail, as Vertex's importer does.
    import_error: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeVertex:
    def __init__(self, project_number: str = "123456789012") -> None:
        self.project_number = project_number
        self.jobs: dict[str, dict[str, Any]] = {}
        self.started: dict[str, float] = {}
        self.cancelled_at: dict[str, float] = {}
        self.sent: list[dict[str, str]] = []
        self.faults = Faults()
        self.regions_seen: set[str] = set()
        self.mutex = threading.RLock()
        self.requests: list[str] = []
        self.version = 0  # bumped on every change of a job, to invalidate the listing cache
        self._listing: tuple[Any, list[dict[str, Any]]] = (None, [])

    # --- API -----------------------------------------------------------------------------------
    def create(self, project: str, location: str, body: dict[str, Any]) -> dict[str, Any]:
        validate(location, body)
        with self.mutex:
            fault = self.faults.create_errors.pop(0) if self.faults.create_errors else ""
            if fault in ("500", "503"):
                raise ApiError(int(fault), "Internal error encountered.")
            busy = sum(1 for j in self.jobs.values() if j["state"] in IN_FLIGHT)
            if fault == "429" or (busy >= self.faults.max_concurrent
                                  and self.faults.quota_mode == "reject"):
                raise ApiError(429, "Quota exceeded for aiplatform.googleapis.com/"
                                    "batch_prediction_concurrent_jobs with base model.")
            job_id = str(10**18 + secrets.randbelow(9 * 10**18))
            name = f"projects/{self.project_number}/locations/{location}/batchPredictionJobs/{job_id}"
            now = _ts(_now())
            job = {k: v for k, v in body.items() if k in (
                "displayName", "model", "inputConfig", "outputConfig", "labels")}
            job.update(name=name, state="JOB_STATE_PENDING" if busy < self.faults.max_concurrent
                       else "JOB_STATE_QUEUED", createTime=now, updateTime=now, modelVersionId="1")
            self.jobs[name] = job
            self.version += 1
            self.started[name] = time.monotonic()
            if fault in ("500-after", "drop-after"):
                raise ApiError(500 if fault == "500-after" else -1, "Internal error encountered.")
            return dict(job)

    def count_tokens(self, body: dict[str, Any]) -> int:
        """A stand-in tokenizer (words and punctuation), unlike batchrun's 4-characters rule."""
        import re

        texts = [str(body.get("system", ""))] + [
            m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
            for m in body.get("messages", [])]
        return sum(len(re.findall(r"\w+|[^\w\s]", t)) for t in texts)

    def _named(self, name: str) -> str:
        """A job's name as stored: Vertex takes the project's id or its number in a path and
        answers with the number (the SDK sends the id; reference §1.3)."""
        parts = name.split("/")
        if len(parts) == 6 and parts[0] == "projects":
            parts[1] = self.project_number
        return "/".join(parts)

    def get(self, name: str) -> dict[str, Any]:
        name = self._named(name)
        with self.mutex:
            if name not in self.jobs:
                raise ApiError(404, "The BatchPredictionJob does not exist.")
            return dict(self.jobs[name])

    def list_jobs(self, location: str, params: dict[str, str]) -> dict[str, Any]:
        if self.faults.refuse_label_filter and "labels." in params.get("filter", ""):
            raise ApiError(400, "Invalid filter: unexpected '-' in label key", "INVALID_ARGUMENT")
        try:
            predicate = compile_filter(params.get("filter", ""))
        except FilterError as exc:
            raise ApiError(400, f"Invalid filter: {exc}") from None
        size = min(int(params.get("pageSize") or self.faults.page_size_max),
                   self.faults.page_size_max)
        offset = int(base64.b64decode(params["pageToken"]).decode()) if params.get(
            "pageToken") else 0
        with self.mutex:
            # Filtering once per listing, not once per page, keeps big listings fast (benchmarks).
            key = (location, params.get("filter", ""), len(self.jobs), self.version)
            if key != self._listing[0]:
                self._listing = (key, [j for j in self.jobs.values()
                                       if f"/locations/{location}/" in j["name"] and predicate(j)])
            matching = self._listing[1]
        page = matching[offset:offset + size]
        out: dict[str, Any] = {}
        if page:
            out["batchPredictionJobs"] = [dict(j) for j in page]
        if offset + size < len(matching):
            out["nextPageToken"] = base64.b64encode(str(offset + size).encode()).decode()
        return out

    def cancel(self, name: str) -> dict[str, Any]:
        name = self._named(name)
        with self.mutex:
            job = self.jobs.get(name)
            if job is None:
                raise ApiError(404, "The BatchPredictionJob does not exist.")
            if job["state"] not in IN_FLIGHT:
                raise ApiError(400, f"BatchPredictionJob {name} is in state {job['state']} and "
                                    "cannot be cancelled.", "FAILED_PRECONDITION")
            if job["state"] == "JOB_STATE_CANCELLING":
                return {}
            job.update(state="JOB_STATE_CANCELLING", updateTime=_ts(_now()))
            self.cancelled_at[name] = time.monotonic()
            self.version += 1
        return {}

    def delete(self, name: str, location: str) -> dict[str, Any]:
        name = self._named(name)
        with self.mutex:
            job = self.jobs.get(name)
            if job is None:
                raise ApiError(404, "The BatchPredictionJob does not exist.")
            if job["state"] in IN_FLIGHT:
                raise ApiError(400, f"BatchPredictionJob {name} is in state {job['state']} and "
                                    "cannot be deleted.")
            del self.jobs[name]
            self.version += 1
        op = f"projects/{self.project_number}/locations/{location}/operations/{secrets.randbelow(10**18)}"
        return {"name": op, "done": True,
                "metadata": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1."
                                      "DeleteOperationMetadata",
                             "genericMetadata": {"createTime": _ts(_now()),
                                                 "updateTime": _ts(_now())}},
                "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}}

    # --- the job machine -----------------------------------------------------------------------
    def tick(self) -> None:
        with self.mutex:
            names = [n for n, j in self.jobs.items() if j["state"] in IN_FLIGHT]
        for name in names:
            try:
                self._advance(name)
            except Exception as exc:  # a broken input fails the job, as on Vertex
                self._finish(name, "JOB_STATE_FAILED",
                             error={"code": 3, "message": f"Failed to import data. {exc}"})

    def _finish(self, name: str, state: str, **extra: Any) -> None:
        with self.mutex:
            job = self.jobs[name]
            now = _ts(_now())
            job.update(state=state, endTime=now, updateTime=now, **extra)
            self.version += 1

    def _advance(self, name: str) -> None:
        faults = self.faults
        with self.mutex:
            job = self.jobs[name]
            state = job["state"]
            age = time.monotonic() - self.started[name]
            busy = sum(1 for j in self.jobs.values() if j["state"] in (
                "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING"))
        if state == "JOB_STATE_CANCELLING":
            if time.monotonic() - self.cancelled_at.get(name, 0.0) < faults.cancelling_seconds:
                return
            if faults.cancel_ends == "JOB_STATE_SUCCEEDED":
                self._run(name, job, finish_from="JOB_STATE_CANCELLING")
                return
            if faults.cancelled_output:
                self._run(name, job, finish_from="JOB_STATE_CANCELLING",
                          limit=faults.cancel_after_rows, end="JOB_STATE_CANCELLED",
                          error={"code": 1, "message": "CANCELED"})
                return
            self._finish(name, "JOB_STATE_CANCELLED", error={"code": 1, "message": "CANCELED"})
            return
        if state == "JOB_STATE_QUEUED":
            if busy < faults.max_concurrent:
                with self.mutex:
                    job["state"] = "JOB_STATE_PENDING"
                    self.version += 1
            return
        if faults.expire_after is not None and age >= faults.expire_after and state != "JOB_STATE_RUNNING":
            self._finish(name, "JOB_STATE_EXPIRED")
            return
        if state == "JOB_STATE_PENDING":
            if age < faults.pending_seconds:
                return
            region = name.split("/locations/")[1].split("/", maxsplit=1)[0]
            internal = faults.internal_jobs > 0
            if internal or (faults.first_job_internal and region not in self.regions_seen):
                with self.mutex:
                    faults.internal_jobs = max(0, faults.internal_jobs - 1)
                self.regions_seen.add(region)
                self._finish(name, "JOB_STATE_FAILED", error={"code": 13, "message": "INTERNAL"})
                return
            self.regions_seen.add(region)
            with self.mutex:
                job.update(state="JOB_STATE_RUNNING", startTime=_ts(_now()),
                           updateTime=_ts(_now()))
                self.version += 1
            return
        if state == "JOB_STATE_RUNNING" and age >= faults.pending_seconds + faults.run_seconds:
            if faults.expire_after_rows is not None:
                self._run(name, job, limit=faults.expire_after_rows, end="JOB_STATE_EXPIRED")
            else:
                self._run(name, job)

    def _run(self, name: str, job: dict[str, Any], *, finish_from: str = "JOB_STATE_RUNNING",
             limit: int | None = None, end: str | None = None,
             error: dict[str, Any] | None = None) -> None:
        """Answer the job's rows (the first `limit` of them), write what was answered, and end it
        in `end` (by default SUCCEEDED, or PARTIALLY_SUCCEEDED with failed rows if asked)."""
        faults = self.faults
        model = job["model"]
        source = job["inputConfig"]
        rows: Iterable[dict[str, Any]] = (
            io.read_bq_rows(source["bigquerySource"]["inputUri"]) if "bigquerySource" in source
            else io.read_gcs_rows(list(source["gcsSource"]["uris"])))
        claude = "/anthropic/" in model
        gemini = "publishers/google/" in model
        if gemini:  # the importer reads the whole input before any row runs
            rows = list(rows)
            with self.mutex:
                forced, faults.import_error = faults.import_error, ""
            problem = forced or importer.problem(rows)
            if problem:
                raise importer.ImportFailure(problem)
        out_rows: list[dict[str, Any]] = []
        ok = failed = 0
        execute = None
        for number, row in enumerate(rows):
            if limit is not None and number >= limit:
                break
            custom_id = str(row.get("custom_id") or row.get("key"))  # gemini-embedding: key
            execute = _executor(row, model, faults)
            with self.mutex:
                if self.jobs[name]["state"] != finish_from:
                    break  # cancelled while running
                self.sent.append({"job": name, "custom_id": custom_id})
            line = execute(row)
            if custom_id in faults.busy_rows or custom_id.removeprefix("br-") in faults.busy_rows:
                line = _busy(line, model)
            if line.get("status") or line.get("error"):
                failed += 1
            else:
                ok += 1
            if custom_id in faults.drop_output_rows or (
                    custom_id.removeprefix("br-") in faults.drop_output_rows):
                continue
            if faults.coerce_ids:
                line = {**line, "custom_id": importer.as_loaded(custom_id)}
            passthrough = {k: v for k, v in row.items() if k not in ("method", "url")}
            out_rows.append({**passthrough, **line} if "bigquerySource" in source else line)
        with self.mutex:
            if self.jobs[name]["state"] != finish_from:
                return
        if gemini:  # "a 5-line batch came back iso-3, iso-2, iso-1, iso-5, iso-4" (reference §2.3)
            random.Random(name).shuffle(out_rows)
        created = datetime.strptime(job["createTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        info = self._write_output(job, out_rows, claude or gemini, created)
        if end is None:
            end = ("JOB_STATE_PARTIALLY_SUCCEEDED" if failed and faults.partial_success
                   else "JOB_STATE_SUCCEEDED")
        extra: dict[str, Any] = {"error": error} if error else {}
        if end in ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"):
            extra["outputInfo"] = info  # a job cut short names no output: the client must look
        self._finish(name, end, **extra,
                     completionStats={"successfulCount": str(ok), "failedCount": str(failed)})

    def _write_output(self, job: dict[str, Any], rows: list[dict[str, Any]], claude: bool,
                      created: datetime) -> dict[str, Any]:
        dest = job["outputConfig"]
        if "bigqueryDestination" in dest:
            dataset, table = io.write_bq_output(dest["bigqueryDestination"]["outputUri"], rows,
                                                claude)
            return {"bigqueryOutputDataset": dataset, "bigqueryOutputTable": table}
        # The folder's timestamp is close to, never equal to, createTime (reference §8.1).
        stamp = _ts(created + timedelta(milliseconds=731, microseconds=905))
        directory = dest["gcsDestination"]["outputUriPrefix"].rstrip("/") + (
            f"/prediction-model-{stamp}")
        lines = [orjson.dumps(r) for r in rows]
        if self.faults.truncate_output and lines:
            lines[-1] = lines[-1][: len(lines[-1]) // 2]
        io.write_gcs_output(directory, lines)
        return {"gcsOutputDirectory": directory}


_BUSY = "Too Many Requests: " + json.dumps({"error": {
    "code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}})


def _busy(line: dict[str, Any], model: str) -> dict[str, Any]:
    """The row's line as the service writes a 429 inside a job that succeeds, per family."""
    if "publishers/google/" in model:  # Gemini: a failed row has a status and no response
        return {**{k: v for k, v in line.items() if k != "response"}, "status": _BUSY}
    if "/anthropic/" in model:
        return {**line, "status": _BUSY, "response": {}}
    return {**line, "response": None, "error": {"code": 429, "message": "RESOURCE_EXHAUSTED"}}


def _executor(row: dict[str, Any], model: str, faults: Faults) -> Any:
    """echo, as the family of `model` answers, refusing what the real services refuse: a request
    with max_tokens (Gemini: maxOutputTokens) 0 or an empty embedding input (doctor's canary)."""
    custom_id = str(row.get("custom_id") or row.get("key"))
    embedding = "/models/gemini-embedding" in model or "/models/text-" in model
    family = (Family.CLAUDE if "/anthropic/" in model else Family.GEMINI_EMBEDDINGS if embedding
              else Family.GEMINI if "publishers/google/" in model else Family.OPENAI_EMBEDDINGS
              if row.get("url") == "/v1/embeddings" else Family.OPENAI_CHAT)
    body = row.get("request") or row.get("body") or {}
    config = body.get("generationConfig") if isinstance(body, dict) else None
    refused = (custom_id,) if isinstance(body, dict) and (
        body.get("max_tokens") == 0 or body.get("input") == []
        or (isinstance(config, dict) and config.get("maxOutputTokens") == 0)) else ()
    execute = echo(ExecutorSpec(fail_ids=(*faults.fail_rows, *refused)), family, model)
    if isinstance(config, dict) and config.get("responseMimeType") == "application/json":
        execute = echo_json(execute, config.get("responseJsonSchema"))  # Gemini's JSON mode
    return execute
