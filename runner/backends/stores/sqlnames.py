"""The one door a name goes through into the SQL batchrun builds: BigQuery's naming rules checked,
backticks put round what passes. What fails is refused, never escaped. Builds no statement."""

from __future__ import annotations

import json
import re
import unicodedata
from enum import StrEnum
from typing import Final

from runner.errors import BackendError, error


class Name(StrEnum):
    COLUMN = "column"
    TABLE = "table"


# Flexible column names (BigQuery's "Specify a schema" page): letters, marks, numbers, connector
# punctuation and dashes of any language, these ASCII signs and whitespace, at most 300 characters;
# a leading digit allowed. Whitespace is taken as space separators (Zs) only: a tab or a newline in
# a quoted name is an escape sequence BigQuery's lexer reads, and no one's column really has one.
COLUMN_SIGNS: Final = frozenset("&%=+:'<>#|")
MAX_COLUMN: Final = 300
# Table names: letters, marks, numbers, connectors, dashes and spaces (L, M, N, Pc, Pd, Zs), at most
# 1,024 UTF-8 bytes. A "$" partition decorator is an API's, never SQL's.
MAX_TABLE_BYTES: Final = 1024
_NAME_CATEGORIES: Final = ("L", "M", "N", "Pc", "Pd", "Zs")
# Datasets: ASCII letters, digits and underscores, at most 1,024. Projects: 6-30 lowercase letters,
# digits and hyphens, a letter first and no hyphen last; a domain-scoped one has "domain:" before.
_DATASET: Final = re.compile(r"[A-Za-z0-9_]{1,1024}")
_PROJECT: Final = re.compile(r"(?:[a-z0-9][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")


class UnsafeNameError(BackendError):
    """A name BigQuery would refuse, kept out of batchrun's SQL (and out of BigQuery)."""

    def __init__(self, kind: Name, name: str, why: str, field: str | None) -> None:
        self.name = name
        shown = json.dumps(name if len(name) <= 80 else name[:77] + "...", ensure_ascii=False)
        rule = ("letters, digits, marks, '_', '-', spaces and & % = + : ' < > # |, at most 300"
                if kind is Name.COLUMN else "project.dataset.table: a project id, a dataset of "
                "letters, digits and '_', a table of letters, digits, marks, '_', '-' and spaces")
        super().__init__([error(f"{kind.value} {shown} cannot be a BigQuery {kind.value} name: {why}",
                                path=field, hint=f"BigQuery {kind.value} names are {rule}; "
                                                 "rename it in the source or the manifest")])


def _refused_char(text: str, allowed: frozenset[str]) -> str | None:
    for char in text:
        if char not in allowed and not unicodedata.category(char).startswith(_NAME_CATEGORIES):
            return char
    return None


def _char_text(char: str) -> str:
    return f"it has {json.dumps(char)}" if char.isprintable() else f"it has U+{ord(char):04X}"


def _column_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_COLUMN:
        return f"it is longer than {MAX_COLUMN} characters"
    char = _refused_char(name, COLUMN_SIGNS)
    return None if char is None else _char_text(char)


def _table_problem(ref: str) -> str | None:
    parts = ref.rsplit(".", 2)  # a domain-scoped project has dots of its own
    if len(parts) != 3:
        return "it is not project.dataset.table"
    project, dataset, table = parts
    if not _PROJECT.fullmatch(project):
        return f"{json.dumps(project)} is not a Google Cloud project id"
    if not _DATASET.fullmatch(dataset):
        return f"dataset {json.dumps(dataset)} is not letters, digits and '_'"
    if not table:
        return "the table name is empty"
    if len(table.encode()) > MAX_TABLE_BYTES:
        return f"the table name is longer than {MAX_TABLE_BYTES} bytes"
    char = _refused_char(table, frozenset())
    return None if char is None else f"the table name {_char_text(char).removeprefix('it ')}"


def quote(kind: Name, name: str, *, field: str | None = None) -> str:
    """`name` quoted for BigQuery SQL, when BigQuery's rules for a `kind` name allow it; else
    UnsafeNameError, naming the manifest's `field` that holds it. Nothing is escaped: a name that
    would need escaping (a backtick, a backslash) is no name BigQuery has."""
    problem = _column_problem(name) if kind is Name.COLUMN else _table_problem(name)
    if problem is not None:
        raise UnsafeNameError(kind, name, problem, field)
    return f"`{name}`"


def column(name: str, *, field: str | None = None) -> str:
    return quote(Name.COLUMN, name, field=field)


def table(ref: str, *, field: str | None = None) -> str:
    return quote(Name.TABLE, ref, field=field)
