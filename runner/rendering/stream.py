"""The render pass over a source, streaming: each row's id checked (duplicates too), rows whose
fingerprint is known skipped, the others rendered; bad rows collected and raised together. Pure:
reads only the rows it is given (and the source again, to name duplicate ids)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runner.errors import Diagnostic, RenderError, error
from runner.rendering.row import (
    MAX_REPORTED,
    RenderedRow,
    Renderer,
    RowError,
    TemplateRefused,
    canonical_fingerprint,
)
from runner.rows.duplicates import IdTracker, name_duplicates
from runner.rows.linefp import is_line_fp
from runner.rows.records import RowIssue, SourceRow
from runner.spec import Manifest


def row_problem(file: str, row: SourceRow | int, message: str, custom_id: str | None) -> Diagnostic:
    number = row.number if isinstance(row, SourceRow) else row
    who = f"row {number}" + (f" (id {custom_id!r})" if custom_id is not None else "")
    return error(f"{who}: {message}", file=file, line=number,
                 hint="fix the source row, or filter it out of the source")


def _ids(renderer: Renderer, rows: Iterable[SourceRow | RowIssue]
         ) -> Iterator[tuple[int, str, Any]]:
    """(row number, id sent, raw id) of every row with a usable id; bad rows were reported by the
    first pass."""
    column = renderer.manifest.source.id_column
    for item in rows:
        if isinstance(item, SourceRow):
            try:
                yield item.number, renderer.custom_id(item), item.data.get(column)
            except RowError:
                continue


def _other(row: SourceRow, fp: str) -> str:
    """A JSONL row's fingerprint of the other kind than `fp`: its values' for its line's, and
    its line's for its values'; "" for a row that has one kind only."""
    if is_line_fp(fp):
        return canonical_fingerprint(row.data)
    return row.fp if row.fp is not None and is_line_fp(row.fp) else ""


def _no_fingerprint(row: SourceRow) -> str:
    return ""  # `batchrun render` only prints the rows: nothing is matched against answers


def render_rows(
    manifest: Manifest,
    rows: Iterable[SourceRow | RowIssue],
    *,
    max_request_bytes: int,
    source_name: str,
    max_id_chars: int = 64,
    reread: Callable[[], Iterable[SourceRow | RowIssue]] | None = None,
    manifest_file: str | None = None,
    known: Callable[[str], bool] | None = None,
    fingerprints: bool = True,
    alternate: bool = False,
) -> Iterator[RenderedRow]:
    """Render every row, streaming; bad rows are collected and raised together at the end.
    With `alternate` (the answers hold JSONL fingerprints of the other kind: an older batchrun's
    or `forward`'s, of the values; `rerun`'s, of the line), a JSONL row unknown by its fingerprint
    is looked up by the other too: known so, it is skipped, its fingerprint to be refreshed.
    `reread` reads the source again to name the rows of duplicate ids (error path only). A template
    the sandbox refuses stops at once, reported against the template in `manifest_file`."""
    renderer = Renderer(manifest, max_request_bytes=max_request_bytes, max_id_chars=max_id_chars)
    ids = IdTracker()
    problems: list[Diagnostic] = []
    bad = 0
    get_id, render, add_id = renderer.custom_id, renderer.render, ids.add
    fingerprint = renderer.fingerprint if fingerprints else _no_fingerprint
    for item in rows:
        if type(item) is RowIssue:
            bad += 1
            if len(problems) < MAX_REPORTED:
                problems.append(row_problem(source_name, item.number, item.message, None))
            continue
        custom_id: str | None = None
        try:
            custom_id = get_id(item)  # type: ignore[arg-type]
            add_id(custom_id)
            fp = fingerprint(item)  # type: ignore[arg-type]
            if known is not None and known(fp):  # answered under this spec: nothing to render
                rendered = RenderedRow(custom_id, b"", "", item, 0, fp, True)  # type: ignore[arg-type]
            elif alternate and known is not None and (old := _other(item, fp)) and known(old):  # type: ignore[arg-type]
                rendered = RenderedRow(custom_id, b"", "", item, 0, fp, True,  # type: ignore[arg-type]
                                       True, old)
            else:
                rendered = render(item, custom_id)  # type: ignore[arg-type]
                rendered.source_fp = fp
        except RowError as exc:
            bad += 1
            if len(problems) < MAX_REPORTED:
                problems.append(row_problem(source_name, item, str(exc), custom_id))  # type: ignore[arg-type]
            continue
        except TemplateRefused as exc:
            template = exc.template
            raise RenderError([error(
                f"the template sandbox refused {template.where if template else 'a template'}: "
                f"{exc.message} (first met at {source_name} row {item.number})",
                file=manifest_file, line=template.line if template and template.line else None,
                path=template.where if template and template.where.startswith("spec.") else None,
                hint="templates format the row's values; loops, big numbers and repetition are "
                     "limited (runner/rendering/sandbox.py)")]) from None
        if not problems:
            yield rendered
    duplicated = ids.duplicate_hashes()
    if duplicated:
        found = (name_duplicates(_ids(renderer, reread()), duplicated, source_name)
                 if reread else [])
        problems.extend(found or [error(f"{source_name} holds duplicate ids",
                                        hint="each row needs its own id")])
        bad += max(len(found), 1)
    if problems:
        problems.sort(key=Diagnostic.sort_key)
        problems = problems[:MAX_REPORTED]
        if bad > len(problems):
            problems.append(error(f"... and {bad - len(problems)} more bad rows in {source_name}"))
        raise RenderError(problems)
