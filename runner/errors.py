"""Diagnostics and the one small exception tree of batchrun; formatting lives in views/text.py.

    BatchrunError            .diagnostics: tuple[Diagnostic, ...]
    ├── ManifestError        YAML, schema, template or reference problems (all found at once)
    ├── ConfigError          batchrun.yaml, flags or environment variables
    ├── RenderError          bad source rows: missing column, null or duplicate id, non-UTF-8, oversize
    ├── LockError            another apply holds the manifest's lock
    ├── ApprovalError        apply was not approved
    ├── PlanFileError        a saved plan that cannot be read, or from a newer batchrun
    ├── StalePlanError       the world changed since the saved plan was made
    │   └── RowsChangedError apply would send other rows than the plan it carries out showed
    ├── BudgetError          the plan's estimated cost is over max_cost
    └── BackendError         a remote or local store call failed
        ├── QuotaError       the service refused a job for quota: its rows wait for the next apply
        └── ForeignDestinationError  the destination exists and batchrun did not write it
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


def n(count: int, noun: str) -> str:
    """"1 row", "2 rows": counts said properly in every message, whichever room builds it."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def usd(amount: float | None, digits: int = 2) -> str:
    """"$1,234.50", "$0.012", "$0.000010": an amount of money as precise as it needs to be —
    at least cents, and below a dollar `digits` significant digits ($0.00001 is not "$0.00")."""
    value = amount or 0.0
    places = 2 if value <= 0 else max(2, digits - 1 - math.floor(math.log10(value)))
    return f"${value:,.{places}f}"


def usd_apart(*amounts: float | None) -> tuple[str, ...]:
    """The amounts said side by side ("estimated X is more than max_cost Y") with as many digits
    as it takes for different amounts to read differently."""
    for digits in range(2, 10):
        said = tuple(usd(a, digits) for a in amounts)
        if len(set(said)) == len({a or 0.0 for a in amounts}):
            return said
    return said


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem, located as precisely as we know: file, line, dotted path or row."""

    severity: Severity
    summary: str
    file: str | None = None
    line: int | None = None
    path: str | None = None  # dotted path in the document, e.g. "spec.source.id"
    hint: str = ""  # what the user should do

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, str]:
        return (self.file or "", self.line or 0, self.path or "")


def error(summary: str, **where: object) -> Diagnostic:
    return Diagnostic(Severity.ERROR, summary, **where)  # type: ignore[arg-type]


def warning(summary: str, **where: object) -> Diagnostic:
    return Diagnostic(Severity.WARNING, summary, **where)  # type: ignore[arg-type]


class BatchrunError(Exception):
    """Base of every error the CLI turns into a message and exit code 1."""

    def __init__(self, diagnostics: Iterable[Diagnostic] | str) -> None:
        if isinstance(diagnostics, str):
            diagnostics = [error(diagnostics)]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("; ".join(d.summary for d in self.diagnostics))


class ManifestError(BatchrunError):
    pass


class ConfigError(BatchrunError):
    pass


class RenderError(BatchrunError):
    pass


class LockError(BatchrunError):
    pass


class ApprovalError(BatchrunError):
    pass


class BackendError(BatchrunError):
    pass


class QuotaError(BackendError):
    pass


class PlanFileError(BatchrunError):
    pass


class StalePlanError(BatchrunError):
    pass


class RowsChangedError(StalePlanError):
    """apply would send other rows than the plan showed: nothing was sent."""


class BudgetError(BatchrunError):
    pass


class ForeignDestinationError(BackendError):
    def __init__(self, where: str, missing: Iterable[str] = (), adopting: bool = False) -> None:
        lacks = f" (it lacks {', '.join(missing)})" if missing else ""
        if adopting:
            super().__init__([error(
                f"cannot adopt destination {where}: it lacks batchrun's ledger columns "
                f"{', '.join(missing)}", hint="adopt takes over a result set with custom_id, "
                "status, spec_hash and request_hash; point the manifest at a new destination")])
            return
        super().__init__([error(
            f"destination {where} already exists and was not written by batchrun{lacks}; "
            "refusing to touch it", hint="point the manifest at a new destination")])
