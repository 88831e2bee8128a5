"""The one executor of write steps: every change to remote state or to a destination — apply,
retry, cancel, import, gc, preview, unlock, the doctor's canary — is a call of a Writer method, and
nothing else in runner/ calls a backend's write methods (the `one writer` import contract checks
it). Owns the locks and how their refusal is said; decides nothing about what to write.

Callers read through `writer.reader`, typed as the read-only interface, so a write that skips the
writer does not type-check either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from runner.backends.base import (
    Backend,
    BackendReader,
    IndexEntry,
    JobRequest,
    RemoteJob,
    StagedInput,
)
from runner.errors import LockError, error
from runner.project.paths import destination_lock
from runner.spec import DestinationSpec, Manifest


def lock_names(manifest: Manifest) -> tuple[str, str]:
    """The manifest's lock and its destination's: two manifests (or two checkouts) writing one
    place cannot write it at once, whatever their names."""
    return manifest.name, destination_lock(manifest.destination)


class Writer:
    """Writes through one backend; `reader` is the same backend seen read-only."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @property
    def reader(self) -> BackendReader:
        return self._backend

    @contextlib.contextmanager
    def locked(self, manifest: Manifest) -> Iterator[None]:
        """The manifest's lock, then its destination's, held for the block."""
        name, dest = lock_names(manifest)
        with self._backend.lock(name), self._destination_lock(manifest, dest):
            yield

    @contextlib.contextmanager
    def _destination_lock(self, manifest: Manifest, lock_name: str) -> Iterator[None]:
        """The destination's lock, its refusal said in terms of the destination, not of a hash."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self._backend.lock(lock_name))
            except LockError as exc:
                who = (exc.diagnostics[0].summary
                       .removeprefix(f"{lock_name} is being applied by ")
                       .removesuffix("; try again when it finishes"))
                raise LockError([error(
                    f"{manifest.name}: its destination {manifest.destination.location} is being "
                    f"written by another apply: {who}", hint="try again when it finishes")]
                ) from None
            yield

    def break_locks(self, manifest: Manifest) -> str:
        """Remove the locks of the manifest and of its destination left by a dead apply; what
        was said of the manifest's."""
        own, dest = lock_names(manifest)
        said = self._backend.unlock(own)
        self._backend.unlock(dest)
        return said

    def stage_rows(self, manifest_name: str, rows: Iterable[tuple[bytes, IndexEntry]]) -> StagedInput:
        return self._backend.stage(manifest_name, rows)

    def create(self, request: JobRequest) -> RemoteJob:
        return self._backend.create_job(request)

    def cancel(self, job_name: str) -> None:
        self._backend.cancel_job(job_name)

    def write(self, dest: DestinationSpec, rows: Iterable[tuple[dict[str, Any], bool]], *,
              collected: Iterable[str], append: bool = False) -> None:
        """The destination rewritten from `rows` (row, changed), or with `append` the changed
        rows added; `collected` recorded beside it as the jobs collected."""
        self._backend.write_destination(dest, rows, collected=collected, append=append)

    def forgive(self, dest: DestinationSpec, names: Iterable[str]) -> None:
        self._backend.forgive_jobs(dest, names)

    def remove(self, job: RemoteJob, *, input_too: bool, dry_run: bool) -> list[str]:
        """What the job left behind (and its staged input with `input_too`) removed, or with
        `dry_run` only named."""
        return self._backend.remove_job(job, input_too=input_too, dry_run=dry_run)
