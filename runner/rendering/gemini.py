"""The Gemini request row, pure: a manifest's prompt and parameters as `{"custom_id", "request":
GenerateContentRequest}`, the id in a form no importer retypes, and a response schema the batch
importer cannot fail on. No I/O; the output side is runner/answers/gemini.py's.

Facts (shared/reference/gemini-batch-protocol.md): the model is the job's, not the line's; there
is no custom_id, but an extra top-level key comes back on the row's output, failed rows included
(§2.3); the importer reads the file like a BigQuery load, so the id travels prefixed (rows/wireid.py),
and `$defs`, `{}`, nulls and 16 levels of nesting fail the whole job (§2.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from runner.rows import wireid

# Parameters that are fields of the request itself; every other goes into generationConfig
# (GENAI models.py _GenerateContentConfig_to_vertex, reference §2.1).
REQUEST_FIELDS: Final = frozenset({"safetySettings", "tools", "toolConfig", "labels"})
JSON_MIME: Final = "application/json"


def _text(value: str) -> dict[str, Any]:
    return {"parts": [{"text": value}]}


def request(texts: Mapping[str, str], examples: int, params: Mapping[str, Any],
            response_format: str, schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The GenerateContentRequest of one row from its rendered texts: system -> systemInstruction,
    each example a user and a model turn, then the user turn; parameters by where they belong."""
    contents = []
    for i in range(examples):
        contents.append({"role": "user", **_text(texts[f"example{i}-user"])})
        contents.append({"role": "model", **_text(texts[f"example{i}-assistant"])})
    if "user" in texts:
        contents.append({"role": "user", **_text(texts["user"])})
    body: dict[str, Any] = {"contents": contents}
    if "system" in texts:
        body["systemInstruction"] = _text(texts["system"])
    config = {k: v for k, v in params.items() if k not in REQUEST_FIELDS}
    if response_format == "json":
        config["responseMimeType"] = JSON_MIME
        if schema is not None:  # already importable_schema's (the renderer makes it once)
            config["responseJsonSchema"] = schema
    if config:
        body["generationConfig"] = config
    body.update((k, v) for k, v in params.items() if k in REQUEST_FIELDS)
    return body


def line(custom_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {wireid.KEY: wireid.sent(custom_id), "request": body}


def older_embeddings(model_id: str) -> bool:
    """text-embedding-* and text-multilingual-embedding-*: the older batch line, `{"content"}`."""
    return model_id.startswith("text-")


def embedding_line(custom_id: str, text: str, params: Mapping[str, Any],
                   older: bool) -> dict[str, Any]:
    """One embedding request: gemini-embedding-* take a native `key` beside `request` (reference
    §5.1); the older models an instance `{"content", task_type, title}`, whose extra keys come
    back in the output's `instance` (§5.2, inferred), so the id rides there."""
    if older:
        return {"content": text, wireid.KEY: wireid.sent(custom_id),
                **{k: v for k, v in params.items() if k in ("task_type", "title")}}
    body: dict[str, Any] = {"content": _text(text)}
    if params:
        body["embed_content_config"] = dict(params)
    return {"key": wireid.sent(custom_id), "request": body}


MAX_NODES: Final = 20_000  # of a schema with its $refs inlined: far past what a job can import
MAX_LEVELS: Final = 32  # of $refs inlined inside one another


class SchemaTooBig(ValueError):
    """Inlining the schema's $refs would not end in an importable schema (recursive, or a few
    definitions each used many times, growing past MAX_NODES)."""


def importable_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON Schema the batch importer accepts, meaning the same: `$ref`s inlined from `$defs`,
    other `$` keywords and null values dropped, empty objects left out, and a list of types as
    `anyOf` (one key one shape across the file). What cannot be made so (property names that are
    no column name, nesting past 15) is refused at plan (importguard), not rewritten here; a
    schema its $refs would blow up raises SchemaTooBig."""
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    nodes = 0

    def clean(value: Any, seen: tuple[str, ...]) -> Any:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_NODES or len(seen) > MAX_LEVELS:
            raise SchemaTooBig(f"inlining its $refs makes it more than {MAX_NODES:,} nodes or "
                               f"{MAX_LEVELS} references deep")
        if isinstance(value, list):
            return [c for c in (clean(v, seen) for v in value) if c is not None and c != {}]
        if not isinstance(value, Mapping):
            return value
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs and ref not in seen:
            target = defs[ref.rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in value.items() if k != "$ref"}}
            return clean(merged, (*seen, ref))
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.startswith("$") or key == "definitions" or item is None:
                continue
            if key == "type" and isinstance(item, list):
                kinds = [k for k in item if isinstance(k, str)]
                if len(kinds) == 1:
                    out["type"] = kinds[0]
                elif kinds:
                    out.setdefault("anyOf", []).extend({"type": k} for k in kinds)
                continue
            cleaned = clean(item, seen)
            if cleaned in ({}, []):
                continue
            out[key] = cleaned
        return out

    cleaned = clean(schema, ())
    return cleaned if isinstance(cleaned, dict) else {}



def _kind(value: Any) -> str | None:
    if value is None:
        return None  # a missing value: any type may stand beside it
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object" if isinstance(value, dict) else "value"


class Shapes:
    """One type per key across a file: the importer infers one schema for every line and fails
    the whole job on a key typed differently in two (reference §2.4). Ready-made rows are checked
    as they render; batchrun's own rows share one template, so one shape."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, int]] = {}

    def problem(self, number: int, value: Any, path: str = "request") -> str | None:
        kind = _kind(value)
        if kind is not None:
            first = self._seen.setdefault(path, (kind, number))
            if first[0] != kind:
                article = "an" if first[0][0] in "aeiou" else "a"
                return (f"{path} is a {kind} here but {article} {first[0]} in row {first[1]}: the batch "
                        "importer gives each key one type across the file and fails the whole "
                        "job on this; give it one type in every row")
        items = (value.items() if isinstance(value, dict)
                 else (("[]", v) for v in value) if isinstance(value, list) else ())
        for key, item in items:
            found = self.problem(number, item, f"{path}{key}" if key == "[]" else f"{path}.{key}")
            if found:
                return found
        return None
