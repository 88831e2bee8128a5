"""Which of the batch jobs a GCP project lists are this batchrun project's, and where their files
are: by the batchrun-project label, or, for a job made before projects had ids, by where its input
was staged. Other projects' jobs are set aside (counted against the quota, never touched). Knows
nothing of plans."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.backends.base import RemoteJob, ours_by_label


def job_folder(staging: str, job: RemoteJob) -> str:
    """Where one of this project's jobs has its files: under the id it is labelled with (the
    default one, for a job made before an id was written), or, made before projects had ids,
    {staging}/{manifest}."""
    return (f"{staging}/{job.project}/{job.manifest_name}" if job.project
            else f"{staging}/{job.manifest_name}")


class Owners:
    def __init__(self, backend: Any) -> None:
        self.backend = backend  # the vertex backend: its staging, settings and Cloud Storage
        self.staging: str = backend.staging
        self.ids = (backend.settings.project_label, backend.settings.default_project_id)
        self._before_ids: dict[str, bool] = {}  # job made before ids -> whether it is ours
        self._staged: dict[str, bool] = {}  # labelled job with a BigQuery input -> staged here

    def split(self, jobs: Iterable[RemoteJob]) -> tuple[list[RemoteJob], list[RemoteJob]]:
        """(this project's managed jobs, other batchrun projects')."""
        mine: list[RemoteJob] = []
        foreign: list[RemoteJob] = []
        for job in jobs:
            if job.managed:
                (mine if self.owns(job) else foreign).append(job)
        return mine, foreign

    def _staged_here(self, job: RemoteJob) -> bool:
        """A job labelled with this project's id whose input lives under this project's staging:
        a copy of batchrun.yaml (its id) with another staging is another project, whose staged
        files this one cannot read."""
        if not job.input_digest:
            return True  # a damaged record cannot be told: as before, the manifests wait for it
        if job.input_uri and job.input_uri.startswith("gs://"):
            return job.input_uri.startswith(f"{self.staging}/")
        found = self._staged.get(job.name)
        if found is None:  # a BigQuery input table: the index staged beside its rows tells (once)
            found = self._staged[job.name] = self.backend.gcs.exists(
                f"{job_folder(self.staging, job)}/inputs/{job.input_digest}.index.jsonl")
        return found

    def owns(self, job: RemoteJob) -> bool:
        """Labelled with this project's id; or made before projects had ids, with its input
        staged at that layout under this project's staging ({staging}/{manifest}/inputs/)."""
        labelled = ours_by_label(job, self.ids)
        if labelled is not None:
            return labelled and self._staged_here(job)
        if not (job.manifest_name and job.input_digest):
            return True  # a damaged record cannot be told: as before, the manifests wait for it
        found = self._before_ids.get(job.name)
        if found is None:
            old = f"{self.staging}/{job.manifest_name}/inputs/{job.input_digest}"
            if job.input_uri and job.input_uri.startswith("gs://"):
                found = job.input_uri == f"{old}.jsonl"
            else:  # a BigQuery input table: the index staged beside its rows tells (once)
                found = self.backend.gcs.exists(f"{old}.index.jsonl")
            self._before_ids[job.name] = found
        return found
