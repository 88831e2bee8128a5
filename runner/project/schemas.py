"""Finds the JSON Schema files (installed wheel or source checkout) and turns violations into diagnostics.

Pure apart from reading the schema files; knows nothing of what a manifest means.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from runner.errors import Diagnostic, error
from runner.project.yamldoc import Document, PathKey, dotted

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError

KNOWN_VALID_MAX = 20_000  # digests kept; past that the file starts again

_JSON_TYPES = {"NoneType": "null", "dict": "object", "list": "array", "str": "string",
               "int": "integer", "float": "number", "bool": "boolean"}
_CHECKOUT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_path(name: str) -> Path:
    """Where `name` (e.g. "manifest.v1") lives: inside the package when installed, else the checkout."""
    packaged = resources.files("runner") / "schemas" / f"{name}.json"
    if packaged.is_file():
        return Path(str(packaged))
    checkout = _CHECKOUT_DIR / f"{name}.json"
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(f"schema {name}.json is neither in the package nor in {_CHECKOUT_DIR}")


@cache
def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_schema_bytes(name))
    return schema


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    import jsonschema  # ~60 ms: loaded only when a document is not known valid

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _required_choice(err: ValidationError) -> list[str] | None:
    """For oneOf/anyOf of single `required` branches, the alternatives ("file", "bigquery", ...)."""
    if err.validator not in ("oneOf", "anyOf"):
        return None
    branches: list[dict[str, Any]] = list(err.validator_value)  # type: ignore[arg-type]
    names = []
    for branch in branches:
        if set(branch) != {"required"} or len(branch["required"]) != 1:
            return None
        names.append(branch["required"][0])
    return names


def _describe(err: ValidationError, schema_props: dict[str, Any]) -> tuple[str, PathKey, str]:
    """Summary, path of the offending node and a hint for one schema violation."""
    path: PathKey = tuple(err.absolute_path)
    choice = _required_choice(err)
    if choice is not None:
        present = [c for c in choice if isinstance(err.instance, dict) and c in err.instance]
        listed = ", ".join(choice)
        if present:
            return f"set only one of {listed} (found {', '.join(present)})", path, ""
        return f"missing one of {listed}", path, f"add exactly one of: {listed}"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(schema_props)
        extra = sorted(k for k in err.instance if k not in schema_props)
        key = extra[0] if extra else ""
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f'did you mean "{close[0]}"?' if close else f"allowed here: {', '.join(allowed)}"
        return f'unknown field "{key}"', (*path, key), hint
    if err.validator == "required":
        missing = str(err.message).split("'")[1] if "'" in err.message else err.message
        return f'missing required field "{missing}"', path, ""
    if err.validator == "const":
        return f"must be {json.dumps(err.validator_value)}", path, ""
    if err.validator == "enum":
        values = ", ".join(json.dumps(v) for v in err.validator_value)  # type: ignore[union-attr]
        return f"must be one of {values}", path, ""
    if err.validator == "type":
        got = _JSON_TYPES.get(type(err.instance).__name__, type(err.instance).__name__)
        return f"must be of type {err.validator_value} (got {got})", path, ""
    if err.validator == "pattern":
        return f"{json.dumps(err.instance)} is not in the expected form", path, _pattern_hint(path)
    if err.validator == "oneOf" and path and path[-1] in ("system", "user", "input", "assistant"):
        return "must be a template string or {file: path}", path, ""
    return err.message, path, ""


def _pattern_hint(path: PathKey) -> str:
    last = path[-1] if path else ""
    if last == "table":
        return "write a table as project.dataset.table"
    if last in ("prefix", "staging") or (len(path) >= 2 and path[-2] == "uris"):
        return "write a Cloud Storage location as gs://bucket/path"
    if last == "project":
        return "a Google Cloud project id: 6-30 lowercase letters, digits and hyphens"
    if list(path) == ["id"]:
        return ("this project's id labels its jobs: 1-63 lowercase letters, digits, '-' and '_', "
                "e.g. the folder's name and 6 random hex digits")
    return ""


def _props_at(err: ValidationError) -> dict[str, Any]:
    props = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
    return dict(props)


def _known_valid_file() -> Path | None:
    if os.environ.get("BATCHRUN_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "batchrun" / "valid-documents"


@cache
def _known_valid() -> set[str]:
    path = _known_valid_file()
    try:
        return set(path.read_text(encoding="ascii").split()) if path else set()
    except (OSError, UnicodeDecodeError):
        return set()


@cache
def _schema_bytes(name: str) -> bytes:
    return schema_path(name).read_bytes()


def _digest(doc: Document, name: str) -> str | None:
    """The document under this very schema: equal digests, equal verdict."""
    try:
        data = orjson.dumps(doc.data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return None
    return hashlib.blake2b(_schema_bytes(name) + b"\0" + data, digest_size=16).hexdigest()


def _remember_valid(digest: str) -> None:
    """A cache, not a record: any failure to write it only costs the next run a validation."""
    path = _known_valid_file()
    if path is None:
        return
    known = _known_valid()
    known.add(digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w" if len(known) > KNOWN_VALID_MAX else "a", encoding="ascii") as fh:
            fh.write(digest + "\n")
    except OSError:
        pass


def _not_json(doc: Document) -> list[Diagnostic]:
    """What YAML reads that JSON (and so the schema, and the request) cannot hold: a key that is
    not text (`true:`, `1:`), and .nan or .inf, which pass any `minimum` and switch off a budget."""
    out = [error(f"key {text} is {kind} in YAML, not text", file=doc.file, line=doc.line_of(path),
                 path=dotted(path), hint=f'quote it: "{text}"')
           for path, text, kind in doc.odd_keys]

    def walk(value: Any, path: PathKey) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            spelt = ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"
            out.append(error(f"must be a finite number (got {spelt})", file=doc.file,
                             line=doc.line_of(path), path=dotted(path) or None,
                             hint="YAML reads .nan and .inf as numbers; write a plain number"))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, (*path, key if isinstance(key, str) else str(key)))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, (*path, i))

    walk(doc.data, ())
    return out


def validate(doc: Document, name: str) -> list[Diagnostic]:
    """Every violation of schema `name` in `doc`, each with file, line and dotted path. A document
    this schema passed before (its digest kept in the user's cache folder) is not validated again:
    jsonschema's import and walk are most of a small command's start-up."""
    unfit = _not_json(doc)  # before the cache: a digest cannot tell `true:` from "true":
    if unfit:
        return sorted(unfit, key=Diagnostic.sort_key)
    digest = _digest(doc, name)
    if digest is not None and digest in _known_valid():
        return []
    out = []
    for err in _validator(name).iter_errors(doc.data):
        # A violation inside a oneOf branch is reported through its parent, once.
        summary, path, hint = _describe(err, _props_at(err))
        out.append(
            error(summary, file=doc.file, line=doc.line_of(path), path=dotted(path) or None,
                  hint=hint)
        )
    if not out and digest is not None:
        _remember_valid(digest)
    return sorted(out, key=Diagnostic.sort_key)
