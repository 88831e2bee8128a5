"""Requests Vertex's batch importer fails as a whole (the job FAILED, code 3, "Failed to import
data ...") before any row runs, told at plan with the fix. Pure: no I/O.

Source: a Gemini batch research note (OpenRouter, Datadog evidence 2026-08) lists the importer's
whole-job failures: `$defs`/`$schema` and other keys that are no BigQuery column name, an empty
object anywhere ("Cannot store struct ... with no fields"), nesting deeper than 15 levels, and one
key an array in one place and not in another ("Repeated field must be imported as a JSON array").
Documented for Gemini only; batchrun applies them to Claude and open-model rows because the
importer is the batch input's one front door (the messages are BigQuery load errors) — inferred.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

MAX_DEPTH: Final = 15  # "the maximum allowed level of 15" (objects inside objects, lists aside)
# Where JSON Schemas travel in a request: Claude tools' input_schema, OpenAI tools' function
# parameters and response_format's json_schema.schema, Gemini's responseJsonSchema. Only inside
# them is one key's shape checked across places (the note's case is `anyOf.type`, a list in one
# branch and a string in another); elsewhere a varying shape is ordinary (Claude's `content`, a
# string or a list of blocks).
SCHEMA_KEYS: Final = frozenset({"input_schema", "parameters", "schema", "responseJsonSchema",
                                "responseSchema"})  # the last two: Gemini's generationConfig

Problem = tuple[tuple[str | int, ...], str, str]  # (path, what, the fix)


def _kind(value: Any) -> str:
    return "list" if isinstance(value, list) else "object" if isinstance(value, dict) else "value"


def _shapes(value: Any, path: tuple[str, ...], seen: dict[tuple[str, ...], str],
            at: tuple[str | int, ...], strict: bool) -> Iterator[Problem]:
    """One key's shape at one schema path (list positions folded, as the importer folds them);
    `strict` (Gemini's importer): an object in one place and a plain value in another too."""
    kind = _kind(value)
    first = seen.setdefault(path, kind)
    if first != kind and ("list" in (first, kind) or strict):
        other = "a list" if "list" in (first, kind) else "an object"
        yield (at, f"`{path[-1]}` is {other} in one place and not in another of the same schema",
               f"give `{path[-1]}` one shape throughout, e.g. anyOf instead of a list of types"
               if other == "a list" else f"give `{path[-1]}` one shape throughout (an object "
               "everywhere, e.g. additionalProperties: {type: string} rather than false)")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _shapes(item, (*path, str(key)), seen, (*at, key), strict)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _shapes(item, (*path, "[]"), seen, (*at, n), strict)


def _problems(value: Any, depth: int, at: tuple[str | int, ...],
              in_schema: bool, strict: bool = False) -> Iterator[Problem]:
    """The importer's whole-job failures in `value`, inside `depth` objects of the row."""
    if isinstance(value, list):
        for n, item in enumerate(value):
            yield from _problems(item, depth, (*at, n), in_schema, strict)
        return
    if value is None and in_schema:
        yield (at, "a null in a schema fails the whole job at import (\"Only optional fields can "
                   "be set to NULL\")", "leave the keyword out instead of setting it to null")
        return
    if not isinstance(value, Mapping):
        return
    if not value:
        yield (at, "an empty object {} fails the whole job at import (a struct with no fields)",
               "remove it, or give it a field")
        return
    if depth + 1 > MAX_DEPTH:
        yield (at, f"nested {depth + 1} objects deep; the batch importer takes at most "
                   f"{MAX_DEPTH} and fails the whole job",
               "flatten it, e.g. inline fewer levels of the schema")
        return
    yield from _members(value, depth + 1, at, in_schema, strict)


# BigQuery's column names, which Gemini's importer holds every key to (reference §2.4, §8.3).
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


def _members(value: Mapping[Any, Any], depth: int, at: tuple[str | int, ...],
             in_schema: bool, strict: bool = False) -> Iterator[Problem]:
    for key, item in value.items():
        name = str(key)
        if strict and not name.startswith("$") and " " not in name and not _COLUMN.match(name):
            yield ((*at, key), f"`{name}` is no name the batch importer takes (keys become "
                               "BigQuery columns: letters, digits and _, not starting with a "
                               "digit) and fails the whole job",
                   "rename it, e.g. with _ for - and .")
            continue
        if name.startswith("$") or " " in name:
            yield ((*at, key), f"`{name}` is no name the batch importer takes (keys become "
                               "BigQuery columns) and fails the whole job",
                   "inline $defs/$ref and drop $schema and other $ keywords"
                   if name.startswith("$") else "use a key without spaces")
            continue
        if not in_schema and name in SCHEMA_KEYS and isinstance(item, dict):
            yield from _shapes(item, (name,), {}, (*at, key), strict)
            yield from _problems(item, depth, (*at, key), True, strict)
        else:
            yield from _problems(item, depth, (*at, key), in_schema, strict)


def row_problems(row: Mapping[str, Any], strict: bool = False) -> Iterator[Problem]:
    """A whole request row's (its top-level keys are the input's columns); `strict`: Gemini's
    importer, documented to hold every key to BigQuery's column names."""
    return _members(row, 0, (), False, strict)


def parameter_problems(parameters: Mapping[str, Any], strict: bool = False) -> Iterator[Problem]:
    """The manifest's parameters', as they land inside the row's `request` or `body` object."""
    return _members(parameters, 1, (), False, strict)


def dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
