"""What old collected jobs left behind (staged inputs, intermediate tables, outputs, job records),
removed through the Writer once older than the retention; what is kept and why. Used by apply and
by `batchrun gc`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from runner.applying.writer import Writer
from runner.backends.base import RemoteJob
from runner.errors import BatchrunError
from runner.spec import Manifest, Settings

log = logging.getLogger(__name__)


def litter(manifest: Manifest, writer: Writer, settings: Settings, *, dry_run: bool,
           jobs: Sequence[RemoteJob] | None = None, now: datetime | None = None,
           collected: set[str] | None = None) -> list[str]:
    """Remove what the manifest's collected jobs older than `retention` left behind (staged inputs,
    intermediate tables, outputs, job records); what is removed, or would be with `dry_run`.

    Kept: any job not yet collected or still counting toward a block (a failed job not set aside
    by `batchrun retry`), and a staged input while another kept job uses it. A preview of another
    spec than the manifest's goes once it is older than `retention` too. `jobs`: the
    manifest's jobs when the caller has just listed them (their states are what matter),
    `collected` the jobs collected when the caller has just read (or written) the record."""
    backend = writer.reader
    jobs = backend.list_jobs(manifest.name) if jobs is None else jobs
    if collected is None:
        collected = backend.collected_jobs(manifest.destination)
    forgiven = backend.forgiven_jobs(manifest.destination)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.retention)

    def old(job: RemoteJob) -> bool:
        ended = job.end_time or job.create_time
        return ended is not None and datetime.fromisoformat(ended.replace("Z", "+00:00")) < cutoff

    gone = [j for j in jobs if j.state.finished and old(j) and (
        (j.name in collected
         and (j.state.short in ("succeeded", "partially_succeeded") or j.name in forgiven))
        # A preview of a spec that was not applied within the retention: nobody will collect it.
        or (j.preview and not j.belongs_to(manifest.spec_hash)))]
    names = {j.name for j in gone}
    # An input staged once and sent again (after a job-level failure) is one thing to remove:
    # with the first of its jobs, not once per job (a dry run removes nothing, so would repeat it).
    inputs = {j.input_digest for j in jobs if j.name not in names}
    removed: dict[str, None] = {}
    for job in gone:
        try:
            removed.update(dict.fromkeys(writer.remove(
                job, input_too=job.input_digest not in inputs, dry_run=dry_run)))
            inputs.add(job.input_digest)
        except BatchrunError as exc:  # litter left is no harm: the next apply tries again
            log.warning("could not remove what %s left behind: %s", job.name, exc)
    return list(removed)
