"""Rendering, pure, one row at a time: a source row -> its Vertex request row, byte-for-byte in the
seed formats (the pass over a whole source is renderpass's).

Templates run in Jinja2's sandbox with StrictUndefined. Never reads files or imports a backend.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
import jinja2.meta
import jinja2.nodes
import orjson

from runner import estimate
from runner.identity import request_hash
from runner.rendering import gemini, importguard
from runner.rendering.sandbox import REFUSALS, BoundedSandbox, Deadline, refusal_text
from runner.rows import wireid
from runner.rows.idrule import hashed_id, hashed_shape, id_ok, sent_as_is
from runner.rows.linefp import is_line_fp
from runner.rows.records import SourceRow
from runner.spec import Family, Manifest, Template

_sha = hashlib.sha256  # request_hash, inlined on the hot path (tests pin that they agree)
ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
MAX_REPORTED: Final = 20  # row problems listed before "... and N more"
ROW_NAME: Final = "row"  # every template may also read the whole row as `row`


# The per-row records below are built millions of times: plain slotted dataclasses construct three
# times faster than frozen ones. Nothing mutates them after construction.
@dataclass(slots=True)
class RenderedRow:
    custom_id: str
    line: bytes  # the request row as sent, without the newline
    request_hash: str
    row: SourceRow
    prompt_chars: int = 0  # characters of text the model reads, for the token estimate
    source_fp: str = ""  # the source row's values, hashed (see Renderer.fingerprint)
    skipped: bool = False  # known answered by its fingerprint: not rendered, line and hash empty
    # The stored answer's fingerprint is not source_fp (an older batchrun's, or the row gained a
    # column): apply writes source_fp there, free. matched_fp: the older one it was known by.
    refresh: bool = False
    matched_fp: str = ""


def _environment(max_output: int = 1_000_000) -> BoundedSandbox:
    return BoundedSandbox(max_output=max_output)


def template_variables(template: Template) -> set[str]:
    """Top-level names a template reads (raises jinja2.TemplateSyntaxError). The sandbox's
    intercepted operators and guarded filters keep Jinja's constant folding from running a bomb
    while a template is only being read; the time limit is the backstop."""
    env = _environment()
    with Deadline():
        return set(jinja2.meta.find_undeclared_variables(env.parse(template.text))) - {ROW_NAME}


def dumps(value: Any) -> bytes:
    """JSON exactly as the seed rows are written: ", " and ": " separators, UTF-8, no escapes."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class RowError(Exception):
    """A single bad row; collected into one RenderError per manifest."""


class TemplateRefused(Exception):
    """The sandbox refused a template: the template is at fault, not the row it met first."""

    def __init__(self, template: Template | None, message: str) -> None:
        super().__init__(message)
        self.template = template
        self.message = message


def _simple_pieces(env: BoundedSandbox, text: str) -> list[str | tuple[str]] | None:
    """A template that only substitutes variables, as literal text and (name,) pieces; else None."""
    pieces: list[str | tuple[str]] = []
    for node in env.parse(text).body:
        if not isinstance(node, jinja2.nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, jinja2.nodes.TemplateData):
                pieces.append(child.data)
            elif isinstance(child, jinja2.nodes.Name) and child.ctx == "load" and (
                    child.name != ROW_NAME):  # `row` is the whole row, even beside a column "row"
                pieces.append((child.name,))
            else:
                return None
    return pieces


def _text(data: Mapping[str, Any], name: str) -> str:
    """`{{ name }}` as Jinja prints it: str() of the value; a missing column is an error."""
    try:
        value = data[name]
    except KeyError:
        if name == ROW_NAME:
            return str(data)
        raise RowError(f"template needs a value the row lacks: '{name}' is undefined") from None
    return value if type(value) is str else str(value)


_SLOT = "@@batchrun-slot-{}@@"


def _canonical(value: Any) -> Any:
    """orjson's fallback for values it does not encode natively (Decimal, bytes, sets)."""
    return {"$type": type(value).__name__, "repr": repr(value)}


def _with_custom_id(data: Mapping[str, Any], custom_id: str) -> Mapping[str, Any]:
    """A ready-made request row carrying the id batchrun sends and tracks: the id column's, hashed
    or not, in place of any other the row has. A row that already carries it keeps its bytes."""
    current = data.get("custom_id")
    if current == custom_id or (type(current) is int and str(current) == custom_id):
        return data
    if "custom_id" in data:
        return {**data, "custom_id": custom_id}  # in its place: the keys keep their order
    return {"custom_id": custom_id, **data}


def _gemini_row(data: Mapping[str, Any], custom_id: str) -> Mapping[str, Any]:
    """A ready-made Gemini request row as sent: the id batchrun tracks and the request alone (any
    other key would become a column of the importer's, one more way to fail the job)."""
    body = data.get("request")
    if not isinstance(body, dict):
        raise RowError('a Gemini request row is {"request": {"contents": [...], ...}} (a '
                       "GenerateContentRequest); this one has no request object")
    return gemini.line(custom_id, body)


def canonical_fingerprint(data: Mapping[str, Any]) -> str:
    """The values of a row, sorted by column and hashed: the fingerprint of CSV and Parquet rows,
    and of JSONL rows before their lines were hashed (an older batchrun's answers are recognised
    by it, then refreshed: runner/ledger/rowpass.py)."""
    items = sorted(data.items())
    try:
        raw = orjson.dumps(items, default=_canonical)
    except (TypeError, orjson.JSONEncodeError):  # a value orjson cannot encode: its repr
        raw = repr(items).encode("utf-8", "surrogatepass")
    if b"null" in raw:  # NaN and inf encode as null too: repr tells them from None
        raw = repr(items).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


class Renderer:
    """Compiled templates of one manifest; turns one row into one request line.

    Templates that only substitute variables take a fast path: the request line is a precomputed
    byte skeleton with JSON-encoded strings dropped into its slots, the same bytes the sandboxed
    Jinja path produces (tests/test_render_fast.py proves it); any other template runs in Jinja.
    """

    def __init__(self, manifest: Manifest, *, max_request_bytes: int,
                 max_id_chars: int = 64) -> None:
        self.manifest = manifest
        self.max_request_bytes = max_request_bytes
        self.max_id_chars = max_id_chars
        # forward keeps an answer while its row's values stand, however the file is written
        self._by_values = manifest.on_change == "forward"
        env = _environment(max_request_bytes)
        prompt = manifest.prompt
        texts: dict[str, Template] = {}
        if prompt.system is not None:
            texts["system"] = prompt.system
        for i, (user, assistant) in enumerate(prompt.examples):
            texts[f"example{i}-user"] = user
            texts[f"example{i}-assistant"] = assistant
        if prompt.user is not None:
            texts["user"] = prompt.user
        if prompt.input is not None:
            texts["input"] = prompt.input
        self._examples = len(prompt.examples)
        self._sources = texts
        self._deadline = Deadline()
        self._templates = {k: env.from_string(t.text) for k, t in texts.items()}
        self._params = dict(manifest.parameters)
        self._requests = manifest.source.format == "requests"
        self._response = manifest.response
        # Gemini's response schema as sent, made once (checks refused one that cannot be made)
        self._json_schema = (gemini.importable_schema(manifest.response.schema)
                             if manifest.family is Family.GEMINI and manifest.response.schema
                             else None)
        # the id as sent: Gemini's carries a prefix no importer retypes (rendering/gemini.py)
        self._id_prefix = wireid.PREFIX if manifest.family in (
            Family.GEMINI, Family.GEMINI_EMBEDDINGS) else ""
        self._shapes = gemini.Shapes()
        self._rehash = manifest.source.id_hash
        pieces = {k: _simple_pieces(env, t.text) for k, t in texts.items()}
        self._fast: dict[str, list[str | tuple[str]]] | None = None
        self._skeleton: list[bytes] = []
        self._order: list[str] = []
        self._slot_var: dict[str, str] = {}
        self._fast_line: Callable[[str, Mapping[str, Any]], tuple[bytes, int]] | None = None
        if not self._requests and all(p is not None for p in pieces.values()):
            self._fast = {k: p for k, p in pieces.items() if p is not None}
            self._compile_skeleton()
            self._fast_line = self._compile_fast()

    def fingerprint(self, row: SourceRow) -> str:
        """A fast hash of the row's values, all columns, type-exact (1, 1.0, "1" and null differ):
        equal fingerprints mean an unchanged row. Under one spec that means an equal request (a row
        whose fingerprint is answered need not be rendered); under `on_change: forward` it means
        the row was not edited, so its older answer is kept. A source that hashes its rows itself
        gives its own: BigQuery in SQL, so it can leave out answered rows; a JSONL file its lines
        (runner/rows/linefp.py), so an unchanged line is told without parsing it. Under `forward`
        a line's is not used: re-writing the file's spacing or key order is no edit there."""
        fp = row.fp
        if fp is None or (self._by_values and is_line_fp(fp)):
            return canonical_fingerprint(row.data)
        return fp

    def _compile_skeleton(self) -> None:
        """Split the line of a request with marker texts into literal bytes and slots."""
        marked = {k: _SLOT.format(k) for k in self._templates}
        line = dumps(self.build(_SLOT.format("id"), marked))
        if self._id_prefix:
            line = line.replace(f'"{self._id_prefix}@@batchrun-slot-id'.encode(),
                                b'"@@batchrun-slot-id')
        parts: list[bytes] = []
        order: list[str] = []
        rest = line
        while True:
            start = rest.find(b'"@@batchrun-slot-')
            if start < 0:
                parts.append(rest)
                break
            end = rest.index(b'@@"', start) + 3
            parts.append(rest[:start])
            order.append(rest[start + len(b'"@@batchrun-slot-'):end - 3].decode())
            rest = rest[end:]
        self._skeleton, self._order = parts, order

    def custom_id(self, row: SourceRow) -> str:
        column = self.manifest.source.id_column
        value = row.data.get(column)
        if type(value) is str and 0 < len(value) <= self.max_id_chars and id_ok(value) and not (
                self._rehash and value[:1] == "h" and hashed_shape(value)):
            return value  # the common case, in one step: kept as is even with hash: true
        if column not in row.data:
            raise RowError(f'has no id column "{column}"')
        value = row.data[column]
        if value is None or value == "":
            raise RowError(f'id column "{column}" is empty')
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RowError(f'id column "{column}" must be a string or a whole number, '
                           f"not {type(value).__name__}")
        text = str(value)
        if self._rehash and not sent_as_is(text, self.max_id_chars, True):
            return hashed_id(text)  # an id that does not fit, or one that looks like a hash
        hint = (f"; set `id: {{column: {column}, hash: true}}` to send a hash of it instead (the "
                f"column is kept in the results)")
        if len(text) > self.max_id_chars:
            raise RowError(f"id is {len(text)} characters, over the limit of {self.max_id_chars} "
                           f"(quota.max_id_chars){hint}")
        if not id_ok(text):
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise RowError(f"id {shown!r} has characters a batch job may refuse: an id is letters, "
                           f"digits, _ and - only (the Anthropic batch rule){hint}")
        return text

    def build(self, custom_id: str, texts: Mapping[str, str]) -> dict[str, Any]:
        """The request row as a dict from its rendered texts, keys in the seed order."""
        family = self.manifest.family
        if family is Family.GEMINI:
            return gemini.line(custom_id, gemini.request(
                texts, self._examples, self._params, self._response.format, self._json_schema))
        if family is Family.GEMINI_EMBEDDINGS:
            return gemini.embedding_line(custom_id, texts["input"], self._params,
                                         gemini.older_embeddings(self.manifest.model.model_id))
        messages = []
        for i in range(self._examples):
            messages.append({"role": "user", "content": texts[f"example{i}-user"]})
            messages.append({"role": "assistant", "content": texts[f"example{i}-assistant"]})
        if "user" in texts:
            messages.append({"role": "user", "content": texts["user"]})
        if family is Family.CLAUDE:
            request: dict[str, Any] = {"messages": messages, "anthropic_version": ANTHROPIC_VERSION,
                                       "max_tokens": self._params.get("max_tokens")}
            if "system" in texts:
                request["system"] = texts["system"]
            request.update((k, v) for k, v in self._params.items() if k != "max_tokens")
            return {"custom_id": custom_id, "request": request}
        if family is Family.OPENAI_CHAT:
            if "system" in texts:
                messages.insert(0, {"role": "system", "content": texts["system"]})
            body = {"model": self.manifest.model.short, "messages": messages, **self._params}
            return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                    "body": body}
        body = {"model": self.manifest.model.short, "input": texts["input"], **self._params}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}

    def request(self, custom_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The request row rendered by sandboxed Jinja (the reference path), within the sandbox's
        limits; `row` is read-only, so a template cannot forge the columns passed through."""
        context = {**data, ROW_NAME: dict(data)}  # a copy: the immutable sandbox refuses edits
        texts: dict[str, str] = {}
        key = ""
        try:
            with self._deadline:
                for key, template in self._templates.items():
                    texts[key] = template.render(context)
        except REFUSALS as exc:  # TemplateLimit, the deadline's included: a SecurityError
            raise TemplateRefused(self._sources.get(key), refusal_text(exc)) from None
        return self.build(custom_id, texts)

    def _compile_fast(self) -> Callable[[str, Mapping[str, Any]], tuple[bytes, int]]:
        """Generate one Python function for the whole line: the hot path of big sources.
        Only our own literals go into the code, as repr() constants; row values stay data."""
        assert self._fast is not None
        lines = ["def line(custom_id, d):", "  try:"]
        names: dict[str, str] = {}
        for pieces in self._fast.values():
            for piece in pieces:
                if isinstance(piece, tuple) and piece[0] not in names:
                    names[piece[0]] = f"v{len(names)}"
                    v = names[piece[0]]
                    lines.append(f"    {v} = d[{piece[0]!r}]")
                    lines.append(f"    {v} = {v} if type({v}) is str else str({v})")
        for n, (key, pieces) in enumerate(self._fast.items()):
            terms = [repr(p) if isinstance(p, str) else names[p[0]] for p in pieces]
            lines.append(f"    t{n} = " + (" + ".join(terms) if terms else "''"))
            self._slot_var[key] = f"t{n}"
        # A missing column: let _text name it (and read `row`, the whole row, if that is the name).
        lines.append("  except KeyError:")
        for n, pieces in enumerate(self._fast.values()):
            terms = [repr(p) if isinstance(p, str) else f"_text(d, {p[0]!r})" for p in pieces]
            lines.append(f"    t{n} = " + (" + ".join(terms) if terms else "''"))
        parts = [f"_S[{0}]"]
        for i, slot in enumerate(self._order, start=1):
            parts.append("_dumps(_P + custom_id)" if slot == "id"
                         else f"_dumps({self._slot_var[slot]})")
            parts.append(f"_S[{i}]")
        chars = " + ".join(f"len({v})" for v in self._slot_var.values()) or "0"
        lines.append(f"  return b''.join(({', '.join(parts)},)), {chars}")
        namespace: dict[str, Any] = {"_S": tuple(self._skeleton), "_dumps": orjson.dumps,
                                     "_text": _text, "_P": self._id_prefix}
        exec(compile("\n".join(lines), "<batchrun fast template>", "exec"), namespace)
        fn: Callable[[str, Mapping[str, Any]], tuple[bytes, int]] = namespace["line"]
        return fn

    def render(self, row: SourceRow, custom_id: str | None = None) -> RenderedRow:
        custom_id = self.custom_id(row) if custom_id is None else custom_id
        fast = self._fast_line
        if fast is not None:
            try:
                line, chars = fast(custom_id, row.data)
            except TypeError as exc:  # orjson refuses text that is not valid Unicode
                raise RowError(f"holds text that is not valid Unicode ({exc})") from exc
            if len(line) > self.max_request_bytes:
                raise RowError(f"request is {len(line):,} bytes, over the limit of "
                               f"{self.max_request_bytes:,} (quota.max_request_bytes)")
            return RenderedRow(custom_id, line, _sha(line).hexdigest()[:32], row, chars)
        try:
            if self._requests:
                sent = {"request": row.data.get("request")} if self._id_prefix else row.data
                for path, what, fix in importguard.row_problems(  # the first is enough
                        sent, strict=bool(self._id_prefix)):
                    raise RowError(f"{importguard.dotted(path)}: {what}; {fix}")
                if self._id_prefix and (found := self._shapes.problem(
                        row.number, row.data.get("request"))):
                    raise RowError(found)
                line = dumps(_gemini_row(row.data, custom_id) if self._id_prefix
                             else _with_custom_id(row.data, custom_id))
                chars = estimate.prompt_chars(self.manifest.family, row.data)
            else:
                request = self.request(custom_id, row.data)
                line = dumps(request)
                chars = estimate.prompt_chars(self.manifest.family, request)
        except jinja2.UndefinedError as exc:
            raise RowError(f"template needs a value the row lacks: {exc.message}") from exc
        except (TemplateRefused, RowError):
            raise
        except jinja2.TemplateNotFound:
            raise RowError("templates cannot include, import or extend other templates") from None
        except jinja2.TemplateError as exc:
            raise RowError(f"template failed: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise RowError(f"holds text that is not valid Unicode ({exc})") from exc
        except Exception as exc:  # the template's own arithmetic or lookups failed on this row
            if "no loader" in str(exc):
                raise RowError("templates cannot include, import or extend other templates") from None
            raise RowError(f"template failed on this row: {type(exc).__name__}: {exc}") from exc
        if len(line) > self.max_request_bytes:
            raise RowError(f"request is {len(line):,} bytes, over the limit of "
                           f"{self.max_request_bytes:,} (quota.max_request_bytes)")
        return RenderedRow(custom_id, line, request_hash(line), row, chars)
