"""LocalBackend: the embedded default. Local sources and destinations, jobs under .batchrun/ run by a
detached worker per job, a file lock per manifest. Knows nothing of plans."""

from __future__ import annotations

import contextlib
import fnmatch
import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import orjson

from runner.backends import staging
from runner.backends.base import (
    Finding,
    IndexEntry,
    JobRequest,
    JobState,
    RemoteJob,
    StagedInput,
    ours_by_label,
    select,
)
from runner.backends.local.store import (
    LABELS_FILE,
    NAME_PREFIX,
    WORKER_URL_ENV,
    JobStore,
    now_rfc3339,
)
from runner.backends.processes import pid_alive
from runner.backends.stores import files as localfiles
from runner.backends.stores.base import Store, StoredRows
from runner.errors import BackendError, LockError, error
from runner.identity import PROJECT_LABEL, local_answerer
from runner.redact import masked_url
from runner.spec import (
    DestinationKind,
    DestinationSpec,
    ExecutorSpec,
    Family,
    Settings,
    SourceKind,
    SourceSpec,
)

FILES: Final = localfiles.FileStore()  # the one kind of store a local job reaches


class LocalBackend(StoredRows):
    kind = "local"
    regional = False

    def __init__(self, settings: Settings, *, regions: Sequence[str] = ()) -> None:
        del regions  # one machine: no regions
        self.settings = settings
        self.state_dir = settings.state_dir
        self.store = JobStore(self.state_dir)
        # Jobs are labelled and told by project as on Vertex, though .batchrun/ is this project's.
        self.project_id = settings.project_label
        self._ids = (self.project_id, settings.default_project_id)
        self._foreign: list[RemoteJob] = []

    # --- reading -------------------------------------------------------------------------------

    def source_store(self, source: SourceSpec) -> Store:
        if source.kind is not SourceKind.FILE:
            raise BackendError(f"the local backend reads local files only; this source is "
                               f"{source.kind.value} (use backend: vertex)")
        return FILES

    def destination_store(self, dest: DestinationSpec) -> Store:
        if dest.kind is not DestinationKind.FILE:
            raise BackendError(f"the local backend writes local files only; this destination is "
                               f"{dest.kind.value} (use backend: vertex)")
        return FILES

    # A kind this backend cannot reach has no version here: the row pass refuses it at the
    # manifest's line, for apply as for plan (apply reads the versions first).
    def source_stamp(self, source: SourceSpec) -> Any:
        return FILES.source_stamp(source) if source.kind is SourceKind.FILE else None

    def destination_stamp(self, dest: DestinationSpec) -> Any:
        return FILES.destination_stamp(dest) if dest.kind is DestinationKind.FILE else None

    def list_jobs(self, manifest_name: str | None = None,
                  in_flight_only: bool = False) -> list[RemoteJob]:
        jobs = [self.store.observe(job_id) for job_id in self.store.ids()]
        jobs += [self.store.quarantined(job_id) for job_id in self.store.quarantined_ids()]
        mine: list[RemoteJob] = []
        foreign: list[RemoteJob] = []
        for job in jobs:
            if job.managed:  # a job made before ids is in this project's own .batchrun/: its own
                (foreign if ours_by_label(job, self._ids) is False else mine).append(job)
        if manifest_name is None:
            self._foreign = select(foreign, None, in_flight_only)
        return select(mine, manifest_name, in_flight_only)

    def foreign_jobs(self) -> list[RemoteJob]:
        return list(self._foreign)

    def get_job(self, name: str) -> RemoteJob:
        job_id = self._job_id(name)
        if not self.store.record_path(job_id).is_file():
            raise BackendError(f"no local job {name}")
        return self.store.observe(job_id)

    def _job_id(self, name: str) -> str:
        return name.rsplit("/", 1)[-1]

    def _index_path(self, job: RemoteJob) -> Path:
        try:
            return Path(self.store.read(self._job_id(job.name))["_local"]["index"])
        except (OSError, ValueError, KeyError, TypeError):  # quarantined: follow its labels
            return (self.state_dir / "staging" / job.manifest_name
                    / f"{job.input_digest}.index.jsonl")

    def read_index(self, job: RemoteJob) -> Iterator[IndexEntry]:
        path = self._index_path(job)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise BackendError([error(
                f"the index of job {job.name} is missing: {path}",
                hint="its rows cannot be told apart; restore the file, or cancel the job and "
                     "move its folder aside to send its rows again")]) from None
        with fh:
            yield from staging.read_index(path, fh)

    def read_output(self, job: RemoteJob) -> Iterator[bytes | dict[str, Any]]:
        if not job.output_uri:
            return
        folder = Path(job.output_uri)
        for path in sorted(folder.glob("*.jsonl")):
            with path.open("rb") as fh:
                yield from (line.rstrip(b"\n") for line in fh if line.strip())

    def count_tokens(self, family: Family, model: str, request: Mapping[str, Any]) -> int | None:
        return None  # no service to ask: the offline approximation stands

    def checkup(self, regions: Sequence[str], datasets: Mapping[str, str],
                max_concurrent_jobs: int, *, tables: Mapping[str, str] | None = None,
                write_probe: bool = False) -> list[Finding]:
        running = len(self.list_jobs(in_flight_only=True)) + len(self.foreign_jobs())
        return [Finding(True, "local backend: jobs run on this machine, no credentials needed"),
                Finding(running < max_concurrent_jobs,
                        f"{running} of {max_concurrent_jobs} job slots in use",
                        None if running < max_concurrent_jobs else
                        "wait for them, or raise quota.max_concurrent_jobs")]

    def placement_problems(self, region: str | None, source: SourceSpec,
                           destination: DestinationSpec) -> list[tuple[str, str]]:
        return []  # one machine: everything is in place

    def answerer(self, model: str) -> str:
        return local_answerer(self.executor_for(model))

    # --- writing -------------------------------------------------------------------------------

    def stage(self, manifest_name: str, rows: Iterable[tuple[bytes, IndexEntry]]) -> StagedInput:
        folder = self.state_dir / "staging" / manifest_name
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_input = tempfile.mkstemp(dir=folder, suffix=".tmp")
        fd2, tmp_index = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(fd)
        os.close(fd2)
        try:
            name, count, size = staging.write_staged(rows, Path(tmp_input), Path(tmp_index))
            final = folder / f"{name}.jsonl"
            # Content-addressed: a file already staged under this digest holds these bytes.
            Path(tmp_input).replace(final)
            Path(tmp_index).replace(folder / f"{name}.index.jsonl")
        finally:
            Path(tmp_input).unlink(missing_ok=True)
            Path(tmp_index).unlink(missing_ok=True)
        return StagedInput(uri=str(final), digest=name, rows=count, bytes=size)

    def executor_for(self, model: str) -> ExecutorSpec:
        short = model.removeprefix("publishers/").replace("/models/", "/")
        for pattern, spec in self.settings.model_executors.items():
            if fnmatch.fnmatchcase(short, pattern) or fnmatch.fnmatchcase(short.split("@")[0],
                                                                           pattern):
                return spec
        return self.settings.executor

    def create_job(self, request: JobRequest) -> RemoteJob:
        job_id = self.store.new_id()
        out_prefix = self.store.dir(job_id) / "output"
        index = Path(request.input.uri).with_name(f"{request.input.digest}.index.jsonl")
        executor = self.executor_for(request.model)
        # base_url's password and query values never land on disk: the worker gets the URL in
        # its environment.
        stored = asdict(executor) | {"base_url": masked_url(executor.base_url)}
        record = {
            "name": NAME_PREFIX + job_id,
            "displayName": request.display_name,
            "model": request.model,
            "inputConfig": {"instancesFormat": "jsonl",
                            "gcsSource": {"uris": [request.input.uri]}},
            "outputConfig": {"predictionsFormat": "jsonl",
                             "gcsDestination": {"outputUriPrefix": str(out_prefix)}},
            "state": JobState.PENDING.value,
            "labels": {**request.labels, PROJECT_LABEL: self.project_id},
            "createTime": now_rfc3339(),
            "_local": {"family": request.family.value, "index": str(index),
                       "executor": stored,
                       "response": {"format": request.response_format,
                                    "schema": request.response_schema}},
        }
        localfiles.write_json(self.store.dir(job_id) / LABELS_FILE,
                              {"labels": record["labels"], "index": str(index)})
        self.store.write(job_id, record)
        log = (self.store.dir(job_id) / "worker.log").open("ab")
        env = {**os.environ, WORKER_URL_ENV: executor.base_url or ""}
        subprocess.Popen(  # detached: the job outlives this CLI process
            [sys.executable, "-m", "runner.backends.local.worker", str(self.state_dir), job_id],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True, cwd=self.settings.root, env=env)
        log.close()
        return self.store.observe(job_id)

    def remove_job(self, job: RemoteJob, *, input_too: bool, dry_run: bool) -> list[str]:
        if not job.managed or not job.state.finished:
            return []
        folder = self.store.dir(self._job_id(job.name))
        things = [folder] if folder.is_dir() else []
        if input_too and job.input_uri and job.input_digest:
            staged = Path(job.input_uri)
            if staged.parent.parent == self.state_dir / "staging":  # batchrun's staging only
                things += [p for p in (staged, staged.with_name(f"{job.input_digest}.index.jsonl"))
                           if p.is_file()]
        if not dry_run:
            for thing in things:
                if thing.is_dir():
                    shutil.rmtree(thing, ignore_errors=True)
                else:
                    thing.unlink(missing_ok=True)
        return [str(t) for t in things]

    def cancel_job(self, name: str) -> None:
        job_id = self._job_id(name)
        if not self.store.record_path(job_id).is_file():
            raise BackendError(f"no local job {name}")
        self.store.cancel_marker(job_id).touch()

    # --- locking -------------------------------------------------------------------------------

    def _lock_paths(self, manifest_name: str) -> tuple[Path, Path]:
        folder = self.state_dir / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{manifest_name}.lock", folder / f"{manifest_name}.owner.json"

    @contextlib.contextmanager
    def lock(self, manifest_name: str) -> Iterator[None]:
        """An OS file lock (released by the kernel if we die) plus a visible owner record."""
        lock_path, owner_path = self._lock_paths(manifest_name)
        import filelock  # a lock is for apply: `render` and `plan` need not load it

        lock = filelock.FileLock(lock_path, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise LockError(_held_message(manifest_name, owner_path)) from None
        try:
            localfiles.write_json(owner_path, {"pid": os.getpid(), "host": socket.gethostname(),
                                               "user": getpass.getuser(), "since": now_rfc3339()})
            yield
        finally:
            owner_path.unlink(missing_ok=True)
            lock.release()

    def unlock(self, manifest_name: str) -> str:
        lock_path, owner_path = self._lock_paths(manifest_name)
        import filelock  # a lock is for apply: `render` and `plan` need not load it

        lock = filelock.FileLock(lock_path, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise LockError(_held_message(manifest_name, owner_path, unlocking=True)) from None
        try:
            existed = owner_path.exists()
            owner_path.unlink(missing_ok=True)
        finally:
            lock.release()
        return (f"removed the stale lock record of {manifest_name}" if existed
                else f"{manifest_name} was not locked")


def _held_message(name: str, owner_path: Path, unlocking: bool = False) -> str:
    try:
        owner = orjson.loads(owner_path.read_bytes())
        who = (f"pid {owner['pid']} ({owner['user']}@{owner['host']}) since {owner['since']}")
        alive = owner["host"] != socket.gethostname() or pid_alive(int(owner["pid"]))
    except (OSError, ValueError, KeyError):
        who, alive = "another process", True
    if unlocking:
        return (f"{name} is locked by {who}, which is still running; refusing to unlock. "
                "Wait for it to finish or stop that process first.")
    state = "" if alive else " (that process looks dead; run `batchrun unlock` " + name + ")"
    return f"{name} is being applied by {who}{state}; try again when it finishes"
