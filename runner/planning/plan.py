"""The plan as frozen data: per manifest, row counts and the changes apply will make. Pure.

Each change has an action (what apply does) and a reason (display only; apply never reads it).
The human view and --json are both rendered from to_dict(), so preview and run cannot drift.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final

from runner.estimate import Estimate

FORMAT_VERSION: Final = 1


class Action(StrEnum):
    CREATE = "create"
    COLLECT = "collect"
    CANCEL = "cancel"
    RESHAPE = "reshape"  # re-derive answers from the stored ones: only their shaping changed
    REFRESH = "refresh"  # write the source rows' fingerprints beside answers that stand


class NoteKind(StrEnum):
    INTERNAL_HOLD = "internal-hold"  # Vertex failed the last job with INTERNAL: resubmit `until`
    FAILURE_HOLD = "failure-hold"  # the last job ended at job level: resubmit `until`
    CANCEL_MAY_LOSE_OUTPUT = "cancel-may-lose-output"  # a cancelled partner-model job
    PROTECTED = "protected"  # apply refuses to cancel its jobs without --allow-cancel
    # Answers of this spec made by another answerer (local echo before vertex): not counted done
    OTHER_ANSWERER = "other-answerer"
    PASSTHROUGH = "passthrough"  # stored rows lack or carry stale passthrough columns: reshaped
    # Answers known by their request, not their source row's fingerprint (`rows`; `legacy`: an
    # older batchrun's fingerprints among them; `by_values`: lines' fingerprints, stored under
    # on_change: rerun, where forward hashes values): refreshed, the next plan skips their rows
    FINGERPRINTS = "fingerprints"


@dataclass(frozen=True, slots=True)
class Note:
    """Something the plan wants a reader to know, as data; display words it."""

    kind: NoteKind
    until: str | None = None  # UTC, "%Y-%m-%d %H:%M:%S"
    state: str | None = None  # how the last job ended
    error: str | None = None  # its error, redacted
    failures: int = 0  # job-level failures in a row so far
    max_failures: int = 0  # quota.max_job_failures
    rows: int = 0  # rows the note is about
    answered_by: str | None = None  # who made those answers (OTHER_ANSWERER)
    answerer: str | None = None  # who answers now
    legacy: bool = False  # FINGERPRINTS: some were stored by an older batchrun
    by_values: bool = False  # FINGERPRINTS: stored by their lines, forward knows rows by values


@dataclass(frozen=True, slots=True)
class RowCounts:
    total: int = 0
    done: int = 0
    in_flight: int = 0
    to_do: int = 0
    failed: int = 0
    waiting: int = 0  # part of to_do that does not fit the concurrent-job quota this time
    reshape: int = 0  # answered under another spec with the same request: re-derived, unpaid
    kept: int = 0  # part of done: answers kept from older specs (on_change: forward)


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    reason: str  # display only
    jobs: tuple[str, ...] = ()  # remote jobs to collect or cancel
    rows: int = 0
    shards: int = 0  # jobs to create
    digest: str = ""  # of the request hashes to send: apply sends exactly these rows, or none


@dataclass(frozen=True, slots=True)
class SpecChange:
    """Rows to do because the spec changed since their stored answers (display only: apply sends
    them like any row to do): how many, which parts of the spec changed ("model", "prompt",
    "parameters", "response", "destination"; empty when no job of the older spec is left to
    tell), and the older specs."""

    rows: int
    changed: tuple[str, ...] = ()
    from_specs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a manifest creates no jobs until `batchrun retry NAME`: repeated job-level failures of
    the same rows with none answered, or credentials refused."""

    since: str  # when the last of those jobs ended
    error: str  # its error, redacted
    failures: int  # job-level failures in a row
    credentials: bool = False  # the endpoint or service refused the credentials
    import_failure: bool = False  # Vertex's batch importer refused the staged rows (code 3)


@dataclass(frozen=True, slots=True)
class ManifestPlan:
    name: str
    file: str
    spec_hash: str
    rows: RowCounts
    changes: tuple[Change, ...] = ()
    failures: tuple[tuple[str, str], ...] = ()  # (custom_id, last error) of rows out of attempts
    notes: tuple[Note, ...] = ()  # display only
    estimate: Estimate = field(default_factory=Estimate)
    manifest_digest: str = ""  # what the plan saw: a saved plan is stale when these differ
    source_digest: str = ""
    blocked: Blocked | None = None
    hold_until: str | None = None  # creates back off until then after a job-level failure
    region: str | None = None  # where its jobs run (regional backends only)
    spec_change: SpecChange | None = None  # part of the rows to do: answered under older specs

    @property
    def actions(self) -> list[str]:
        kinds = [c.action for c in self.changes]
        replacing = Action.CANCEL in kinds and Action.CREATE in kinds
        out: list[str] = []
        for kind in kinds:
            name = "replace" if replacing and kind in (Action.CANCEL, Action.CREATE) else kind.value
            if name not in out:
                out.append(name)
        if self.rows.waiting and "wait" not in out:
            out.append("wait")
        return out

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def settled(self) -> bool:
        """Nothing to do, in flight, failed or blocked: every row answered."""
        r = self.rows
        return not (self.has_changes or r.in_flight or r.failed or r.to_do or self.blocked)

    @property
    def state(self) -> str:
        """Where the manifest stands, as data: blocked, its first action, running, failed or
        up-to-date (display turns it into a symbol and words)."""
        if self.blocked is not None:
            return "blocked"
        if self.actions:
            return self.actions[0]
        if self.rows.in_flight:
            return "running"
        return "failed" if self.rows.failed else "up-to-date"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "spec_hash": self.spec_hash,
            "actions": self.actions,
            "rows": asdict(self.rows),
            "changes": [{**asdict(c), "action": c.action.value, "jobs": list(c.jobs)}
                        for c in self.changes],
            "failures": [{"custom_id": i, "error": e} for i, e in self.failures],
            "notices": [{**asdict(note), "kind": note.kind.value} for note in self.notes],
            "estimate": asdict(self.estimate),
            "manifest_digest": self.manifest_digest,
            "source_digest": self.source_digest,
            "blocked": asdict(self.blocked) if self.blocked else None,
            "hold_until": self.hold_until,
            "region": self.region,
            "spec_change": None if self.spec_change is None else {
                "rows": self.spec_change.rows, "changed": list(self.spec_change.changed),
                "from_specs": list(self.spec_change.from_specs)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestPlan:
        return cls(
            name=data["name"], file=data["file"], spec_hash=data["spec_hash"],
            rows=RowCounts(**data["rows"]),
            changes=tuple(Change(action=Action(c["action"]), reason=c["reason"],
                                 jobs=tuple(c["jobs"]), rows=c["rows"], shards=c["shards"],
                                 digest=c.get("digest", ""))
                          for c in data["changes"]),
            failures=tuple((f["custom_id"], f["error"]) for f in data["failures"]),
            notes=tuple(Note(**{**note, "kind": NoteKind(note["kind"])})
                        for note in data.get("notices", ())),
            estimate=Estimate(**data["estimate"]),
            manifest_digest=data["manifest_digest"], source_digest=data["source_digest"],
            blocked=Blocked(**data["blocked"]) if data.get("blocked") else None,
            hold_until=data.get("hold_until"), region=data.get("region"),
            spec_change=SpecChange(change["rows"], tuple(change["changed"]),
                                   tuple(change["from_specs"]))
            if (change := data.get("spec_change")) else None)


@dataclass(frozen=True, slots=True)
class Orphan:
    """A running job whose manifest is gone; cancelled only with --prune."""

    manifest_name: str
    job: str
    cancel: bool


@dataclass(frozen=True, slots=True)
class Plan:
    backend: str
    manifests: tuple[ManifestPlan, ...]
    orphans: tuple[Orphan, ...] = ()
    observed_digest: str = ""  # the remote jobs this plan saw
    total_over_budget: bool = False  # the whole apply is over the project's max_cost
    max_cost: float | None = None
    format_version: int = field(default=FORMAT_VERSION)

    @property
    def has_changes(self) -> bool:
        return any(m.has_changes for m in self.manifests) or any(o.cancel for o in self.orphans)

    @property
    def over_budget(self) -> bool:
        return self.total_over_budget or any(m.estimate.over_budget for m in self.manifests)

    @property
    def cost(self) -> float | None:
        costs = [m.estimate.cost for m in self.manifests if m.rows.to_do]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def manifest(self, name: str) -> ManifestPlan:
        return next(m for m in self.manifests if m.name == name)

    def summary(self) -> dict[str, int]:
        creates = [c for m in self.manifests for c in m.changes if c.action is Action.CREATE]
        return {
            "rows_to_send": sum(c.rows for c in creates),
            "jobs_to_create": sum(c.shards for c in creates),
            "jobs_to_collect": sum(len(c.jobs) for m in self.manifests for c in m.changes
                                   if c.action is Action.COLLECT),
            "jobs_to_cancel": sum(len(c.jobs) for m in self.manifests for c in m.changes
                                  if c.action is Action.CANCEL)
            + sum(1 for o in self.orphans if o.cancel),
            "rows_waiting": sum(m.rows.waiting for m in self.manifests),
            # part of rows_waiting: held back until hold_until after a job-level failure
            "rows_held": sum(m.rows.waiting for m in self.manifests if m.hold_until),
            "up_to_date": sum(1 for m in self.manifests if m.settled),
            "blocked": sum(1 for m in self.manifests if m.blocked is not None),
            "rows_failed": sum(m.rows.failed for m in self.manifests),
            "input_tokens": sum(m.estimate.input_tokens for m in self.manifests),
            "output_tokens": sum(m.estimate.output_tokens for m in self.manifests),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "has_changes": self.has_changes,
            "backend": self.backend,
            "summary": self.summary(),
            "cost": self.cost,
            "max_cost": self.max_cost,
            "over_budget": self.over_budget,
            "total_over_budget": self.total_over_budget,
            "observed_digest": self.observed_digest,
            "manifests": [m.to_dict() for m in self.manifests],
            "orphans": [asdict(o) for o in self.orphans],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The inverse of to_dict (derived fields such as summary are recomputed)."""
        return cls(backend=data["backend"],
                   manifests=tuple(ManifestPlan.from_dict(m) for m in data["manifests"]),
                   orphans=tuple(Orphan(**o) for o in data["orphans"]),
                   observed_digest=data["observed_digest"],
                   total_over_budget=data.get("total_over_budget", False),
                   max_cost=data["max_cost"],
                   format_version=data["format_version"])
