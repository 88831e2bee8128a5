"""What this identity may do with the staging bucket and the BigQuery tables, asked of the services
(testIamPermissions), never found out by trying: doctor writes nothing unless asked (--canary).

Cloud Storage answers `buckets.testIamPermissions` for any caller with the subset of the asked
permissions it holds. BigQuery has no such call on datasets in the client (its REST API has it on
tables only, `tables.testIamPermissions`), so a dataset is checked by reading its metadata
(`datasets.get`, read-only) and each existing table batchrun reads or writes by asking; creating a
table cannot be asked without creating one, which only --canary does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from runner.backends.base import Finding

# Cloud Storage: what each batchrun step does in the staging bucket.
STAGING: Final = {
    "storage.objects.get": "read",
    "storage.objects.list": "list",
    "storage.objects.create": "create",
    "storage.objects.delete": "delete",
}
BUCKET_GET: Final = "storage.buckets.get"  # plan's check that the staging bucket is there
# BigQuery: a source table is read; a destination table is read (plan) and merged into (apply).
READ: Final = ("bigquery.tables.get", "bigquery.tables.getData")
WRITE: Final = (*READ, "bigquery.tables.updateData")


def _listed(words: Sequence[str], conjunction: str = "and") -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def could_not_check(what: str, exc: BaseException, fix: str) -> Finding:
    """A `!`, not a ✗: the service did not say (an emulator that does not implement the call)."""
    code = getattr(exc, "code", None)
    why = f"HTTP {code}, {type(exc).__name__}" if code else type(exc).__name__
    return Finding(True, f"{what}: could not check; the service did not answer "
                         f"testIamPermissions ({why})", fix, warn=True)


def staging_permissions(bucket: Any, where: str) -> list[Finding] | None:
    """One ✓ for what the identity may do in the staging bucket, one ✗ for what it may not; `!`
    when the service does not answer the question (an emulator that does not implement it).
    None when there is no such bucket."""
    from google.api_core.exceptions import GoogleAPICallError, NotFound

    try:
        granted = set(bucket.test_iam_permissions([BUCKET_GET, *STAGING]))
    except NotFound:
        return None
    except (GoogleAPICallError, ValueError, KeyError) as exc:
        return [could_not_check(f"{where}: permissions", exc,
                                "run `batchrun doctor --canary`, which writes and removes a test "
                                "object there")]
    may = [verb for perm, verb in STAGING.items() if perm in granted]
    may_not = [perm for perm in STAGING if perm not in granted]
    out = []
    if BUCKET_GET not in granted:
        out.append(Finding(False, f"{where}: this identity may not read the bucket itself "
                                  f"({BUCKET_GET}); plan asks with it that the bucket is there",
                           "grant roles/storage.legacyBucketReader (plan) or "
                           "roles/storage.legacyBucketWriter (apply) on the bucket"))
    if may:
        out.append(Finding(True, f"{where}: this identity may {_listed(may)} objects there "
                                 "(asked Cloud Storage; nothing written)"))
    if may_not:
        out.append(Finding(False, f"{where}: this identity may not "
                                  f"{_listed([STAGING[p] for p in may_not], 'or')} objects there "
                                  f"({', '.join(may_not)}); apply stages its inputs and takes its "
                                  "lock there",
                           "grant roles/storage.objectAdmin on the bucket to the identity that "
                           "runs apply; plan needs only to read (roles/storage.objectViewer and "
                           "roles/storage.legacyBucketReader)"))
    return out


def table_permissions(bq: Any, tables: Mapping[str, str]) -> list[Finding]:
    """Each table batchrun reads ("read") or writes ("write"): what this identity may do with it,
    asked of BigQuery; a table not there yet is apply's to create."""
    from google.api_core.exceptions import GoogleAPICallError, NotFound

    out = []
    for table, use in sorted(tables.items()):
        wanted = WRITE if use == "write" else READ
        try:
            answer = bq.client.test_iam_permissions(table, list(wanted), retry=bq.retry,
                                                    timeout=bq.timeout)
            granted = set(answer.get("permissions") or ())
        except NotFound:
            if use == "write":
                out.append(Finding(True, f"table {table}: not there yet; apply creates it "
                                         "(BigQuery cannot be asked whether it may without "
                                         "creating one; `doctor --canary` does)"))
            else:
                out.append(Finding(False, f"table {table}: does not exist",
                                   "fix the source table in the manifest"))
            continue
        except (GoogleAPICallError, AttributeError, TypeError) as exc:
            out.append(could_not_check(f"table {table}: permissions", exc,
                                       "run `batchrun doctor --canary`, which runs a small job "
                                       "into BigQuery"))
            continue
        reads = [p for p in READ if p not in granted]
        may_not_write = use == "write" and "bigquery.tables.updateData" not in granted
        if not reads:
            out.append(Finding(True, f"table {table}: this identity may "
                                     + ("read and write it" if use == "write" and not may_not_write
                                        else "read it") + " (asked BigQuery)"))
        else:
            out.append(Finding(False, f"table {table}: this identity may not read it "
                                      f"({', '.join(reads)}); plan reads "
                                      + ("its answers" if use == "write" else "its rows"),
                               "grant roles/bigquery.dataViewer on the table or its dataset"))
        if may_not_write:
            out.append(Finding(False, f"table {table}: this identity may not write it "
                                      "(bigquery.tables.updateData); apply merges answers into it",
                               "grant roles/bigquery.dataEditor on its dataset to the identity "
                               "that runs apply; plan needs only roles/bigquery.dataViewer"))
    return out
