"""The local job store under .batchrun/: job records shaped like Vertex BatchPredictionJob JSON.

Only the owning worker process writes a job's record after creation; the CLI asks for a cancel by
dropping a marker file, so the two never race on one file.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from runner.backends.base import JobState, RemoteJob
from runner.backends.processes import pid_alive, pid_space, process_start
from runner.backends.stores.files import write_json
from runner.identity import (
    LOCAL_JOB_PREFIX,
    MANAGED_LABEL,
    MANAGED_VALUE,
    NAME_LABEL,
    local_answerer,
)
from runner.rpc import Code

WORKER_URL_ENV = "BATCHRUN_WORKER_BASE_URL"  # base_url with its password, never stored on disk

NAME_PREFIX = LOCAL_JOB_PREFIX
START_GRACE_SECONDS = 60  # a job whose worker has not started by then is reported failed
# A worker writes its heartbeat this often; one seen from another PID namespace (its pid means
# nothing here) is alive while its heartbeat is younger than HEARTBEAT_STALE seconds.
HEARTBEAT_EVERY = 5.0
HEARTBEAT_STALE = 30.0
LABELS_FILE = "labels.json"  # written once at create, never rewritten: what a damaged record was


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def worker_alive(pid: int, started: str | None) -> bool:
    """The worker runs: its pid is alive and, where recorded, is the same process (a pid reused
    by another program is not our worker). A paused worker still counts as running: it will go
    on, and its rows must not be sent twice."""
    if not pid_alive(pid):
        return False
    return started is None or process_start(pid) in (None, started)


def _age(path: Path) -> float | None:
    try:
        return datetime.now(UTC).timestamp() - path.stat().st_mtime
    except OSError:
        return None


class JobStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "jobs"

    def new_id(self) -> str:
        return str(10**18 + secrets.randbelow(9 * 10**18))

    def dir(self, job_id: str) -> Path:
        return self.root / job_id

    def record_path(self, job_id: str) -> Path:
        return self.dir(job_id) / "job.json"

    def _worker_runs(self, job_id: str, record: dict[str, Any]) -> bool:
        """Whether the job's worker still runs. Its pid is judged only from its own PID space;
        from another (a second container sharing this folder) its heartbeat tells."""
        local = record.get("_local", {})
        if local.get("pid_space") in (None, pid_space()):
            return worker_alive(int(local["pid"]), local.get("pid_start"))
        age = _age(self.heartbeat(job_id))
        return age is not None and age < HEARTBEAT_STALE

    def heartbeat(self, job_id: str) -> Path:
        return self.dir(job_id) / "heartbeat"

    def cancel_marker(self, job_id: str) -> Path:
        return self.dir(job_id) / "cancel"


    def write(self, job_id: str, record: dict[str, Any]) -> None:
        record["updateTime"] = now_rfc3339()
        write_json(self.record_path(job_id), record)

    def read(self, job_id: str) -> dict[str, Any]:
        record: dict[str, Any] = orjson.loads(self.record_path(job_id).read_bytes())
        return record

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if (p / "job.json").is_file()]

    @property
    def quarantine(self) -> Path:
        return self.root.parent / "quarantine"

    def quarantined_ids(self) -> list[str]:
        if not self.quarantine.is_dir():
            return []
        return [p.name for p in self.quarantine.iterdir() if p.is_dir()]

    def quarantined(self, job_id: str) -> RemoteJob:
        """A job whose record was damaged: its state is unknown, so it counts as in flight (its
        rows are never sent again) until the user looks at it and deletes the folder."""
        folder = self.quarantine / job_id
        labels: dict[str, str] = {}
        for name in (LABELS_FILE, "job.json"):  # the labels written once at create come first
            try:
                raw = (folder / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            labels = dict(re.findall(r'"(batchrun-[a-z]+)"\s*:\s*"([^"]*)"', raw))
            if labels.get(NAME_LABEL):
                break
        # Its manifest unknown, it could hold any manifest's rows: it is everyone's (in flight).
        labels.setdefault(MANAGED_LABEL, MANAGED_VALUE)
        return RemoteJob(
            name=NAME_PREFIX + job_id, state=JobState.UNSPECIFIED, labels=labels,
            error_message=f"the job record was damaged and moved to {folder}; its rows count as "
                          "in flight until you check it and delete that folder")

    def observe(self, job_id: str) -> RemoteJob:
        """The job as a client sees it, with dead workers and cancel requests taken into account.
        A damaged record is moved to the quarantine and reported as unknown, never a crash."""
        try:
            return self._observe(job_id)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            self.quarantine.mkdir(parents=True, exist_ok=True)
            target = self.quarantine / job_id
            if not target.exists():
                self.dir(job_id).replace(target)
            return self.quarantined(job_id)

    def _observe(self, job_id: str) -> RemoteJob:
        record = self.read(job_id)
        state = JobState(record.get("state", JobState.UNSPECIFIED.value))
        error = record.get("error") or {}
        end_time = record.get("endTime")
        if state.in_flight:
            pid = record.get("_local", {}).get("pid")
            created = parse_time(record.get("createTime"))
            age = (datetime.now(UTC) - created).total_seconds() if created else 0
            if (pid is not None and not self._worker_runs(job_id, record)) or (
                    pid is None and age > START_GRACE_SECONDS):
                # Not the rows' fault: what the worker answered is in its output, which is
                # collected like any ended job's; the rest is to do again.
                state = JobState.FAILED
                end_time = end_time or record.get("updateTime")
                error = {"code": Code.ABORTED.value,
                         "message": "the local worker process died (killed, or out of memory) "
                                    "before finishing; its answers so far are kept"
                         if pid is not None else "the local worker process never started"}
            elif self.cancel_marker(job_id).exists():
                state = JobState.CANCELLING
        stats = record.get("completionStats", {})
        labels = record.get("labels", {})
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ValueError("labels are not a mapping of strings")
        uris = record.get("inputConfig", {}).get("gcsSource", {}).get("uris") or [None]
        output = record.get("outputInfo", {}).get("gcsOutputDirectory")
        if output is not None and not isinstance(output, str):
            raise ValueError("outputInfo is not a folder")
        return RemoteJob(
            name=record["name"],
            state=state,
            labels=labels,
            display_name=record.get("displayName", ""),
            model=record.get("model", ""),
            create_time=record.get("createTime"),
            end_time=end_time,
            error_code=error.get("code"),
            error_message=error.get("message"),
            succeeded_count=int(stats["successfulCount"]) if "successfulCount" in stats else None,
            failed_count=int(stats["failedCount"]) if "failedCount" in stats else None,
            input_uri=uris[0],
            output_uri=output,
            answered_by=_answerer(record),
        )


def _answerer(record: dict[str, Any]) -> str:
    """Who answers the job's rows: the executor recorded when it was created."""
    executor = (record.get("_local") or {}).get("executor")
    return local_answerer(executor) if isinstance(executor, dict) else "local"
