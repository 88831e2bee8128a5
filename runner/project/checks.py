"""Checks the JSON Schema cannot express: labels, model families, templates against columns, uniqueness.

Pure apart from reading a local source's header to discover its columns.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2

from runner import identity
from runner.answers import result
from runner.errors import Diagnostic, error, warning
from runner.models import catalog
from runner.models import rules as modelrules
from runner.project.paths import destination_key
from runner.project.yamldoc import Document, PathKey
from runner.rendering import gemini, importguard
from runner.rendering.row import template_variables
from runner.rendering.sandbox import TemplateLimit, refusal_text
from runner.rows import files as rowfile
from runner.spec import Family, Manifest, SourceKind, Task, Template

# Columns batchrun writes into every result row, and `outcome`, which `results` adds: a
# passthrough column may not shadow them — in any letter case (BigQuery's column names ignore it).
RESULT_FIELDS: Final = result.RESERVED
_FOLDED: Final = frozenset(f.casefold() for f in RESULT_FIELDS)


def _at(doc: Document, *path: str | int) -> dict[str, object]:
    key: PathKey = tuple(path)
    return {"file": doc.file, "line": doc.line_of(key),
            "path": ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in key).replace(
                ".[", "[")}


def _columns(manifest: Manifest) -> list[str] | None:
    source = manifest.source
    if source.columns is not None:
        return list(source.columns)
    if source.kind is SourceKind.FILE:
        return rowfile.discover_columns(Path(source.location), source.format, source.max_row_bytes)
    return None


def _template_path(template: Template) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    for piece in template.where.replace("]", "").replace("[", ".").split("."):
        parts.append(int(piece) if piece.isdigit() else piece)
    return tuple(parts) if template.where.startswith("spec.") else ("spec", "prompt")


def _check_prompt(manifest: Manifest, doc: Document) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    prompt = manifest.prompt
    requests = manifest.source.format == "requests"
    if requests:
        if prompt.templates():
            out.append(error("a source of ready-made request rows takes no prompt",
                             **_at(doc, "spec", "prompt"),
                             hint="remove spec.prompt, or set source.format to jsonl"))
        return out
    if manifest.task is Task.EMBEDDINGS:
        if prompt.system or prompt.user or prompt.examples:
            out.append(error("embeddings take no messages: use prompt.input",
                             **_at(doc, "spec", "prompt"),
                             hint="replace system/user/examples with input: '{{ text }}'"))
        if prompt.input is None:
            out.append(error("an embeddings manifest needs prompt.input",
                             **_at(doc, "spec", "prompt")))
    else:
        if prompt.input is not None:
            out.append(error("prompt.input is for embeddings; chat models take prompt.user",
                             **_at(doc, "spec", "prompt", "input")))
        if prompt.user is None:
            out.append(error("a chat manifest needs prompt.user", **_at(doc, "spec", "prompt"),
                             hint="add user: with the message template"))
    columns = _columns(manifest)
    source = manifest.source
    if source.kind is SourceKind.FILE and Path(source.location).is_file() and (
            Path(source.location).stat().st_size == 0):
        out.append(warning("the source file is empty: nothing to do",
                           **_at(doc, "spec", "source", "file")))
    for template in prompt.templates():
        path = _template_path(template)
        try:
            variables = template_variables(template)
        except jinja2.TemplateSyntaxError as exc:
            out.append(error(f"template syntax error in {template.where}: {exc.message} "
                             f"(template line {exc.lineno})", **_at(doc, *path),
                             hint="see https://jinja.palletsprojects.com/templates/"))
            continue
        except (TemplateLimit, RecursionError, MemoryError) as exc:
            out.append(error(f"the template sandbox refused {template.where} while checking it: "
                             f"{refusal_text(exc)}", **_at(doc, *path),
                             hint="loops, big numbers and repetition are limited "
                                  "(runner/rendering/sandbox.py)"))
            continue
        if columns is None:
            continue
        for name in sorted(variables - set(columns)):
            close = difflib.get_close_matches(name, columns, n=1)
            hint = (f'did you mean "{close[0]}"?' if close
                    else f"the source has: {', '.join(columns) or 'no columns'}")
            out.append(error(f'{template.where} uses "{name}", which is not a source column',
                             **_at(doc, *path), hint=hint))
    if columns is not None and manifest.source.id_column and (
            manifest.source.id_column not in columns):
        out.append(error(f'id column "{manifest.source.id_column}" is not a source column',
                         **_at(doc, "spec", "source", "id"),
                         hint=f"the source has: {', '.join(columns) or 'no columns'}"))
    for name in manifest.passthrough:
        if columns is not None and name not in columns:
            out.append(error(f'passthrough column "{name}" is not a source column',
                             **_at(doc, "spec", "passthrough")))
    return out


_BQ_COLUMN: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


def _gs_problem(uri: str) -> str | None:
    """What is wrong with a gs:// path that Cloud Storage would take literally or refuse."""
    path = uri.removeprefix("gs://").split("/", 1)[1] if "/" in uri.removeprefix("gs://") else ""
    parts = path.rstrip("/").split("/") if path else []
    if any(p in (".", "..") for p in parts):
        return "has a '.' or '..' segment (Cloud Storage names are literal, never resolved)"
    if any(p == "" for p in parts):
        return "has an empty segment ('//')"
    return None


def _check_locations(manifest: Manifest, doc: Document) -> list[Diagnostic]:
    """Names the destination would refuse only after the rows were paid for."""
    out: list[Diagnostic] = []
    dest = manifest.destination
    if dest.kind.value == "bigquery":
        for name in manifest.passthrough:
            if not _BQ_COLUMN.match(name):
                out.append(error(f'passthrough column "{name}" cannot be a BigQuery column name',
                                 **_at(doc, "spec", "passthrough"),
                                 hint="BigQuery columns are letters, digits and '_', not starting "
                                      "with a digit; rename it in the source"))
    if dest.kind.value == "gcs" and (why := _gs_problem(dest.location)):
        out.append(error(f"destination prefix {dest.location} {why}",
                         **_at(doc, "spec", "destination", "gcs", "prefix")))
    for i, uri in enumerate(manifest.source.uris):
        if why := _gs_problem(uri):
            out.append(error(f"source {uri} {why}", **_at(doc, "spec", "source", "gcs", "uris", i)))
    return out


def _check_names(manifest: Manifest, doc: Document) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    problem = identity.label_value_problem(manifest.name) or (
        None if manifest.name[0].isalpha() or manifest.name[0].isdigit()
        else "names start with a lowercase letter or digit")
    if problem:
        out.append(error(f'name "{manifest.name}" cannot be a Vertex label value: {problem}',
                         **_at(doc, "metadata", "name"),
                         hint="use lowercase letters, digits, '-' and '_', at most 63"))
    for key, value in manifest.labels.items():
        why = identity.label_key_problem(key) or identity.label_value_problem(value)
        if why:
            out.append(error(f'label "{key}": {why}', **_at(doc, "metadata", "labels", key)))
    # batchrun's own: managed, name, spec, input, shard, parts, project and, on a preview's job,
    # preview.
    if len(manifest.labels) > identity.MAX_LABELS - 8:
        out.append(error(f"at most {identity.MAX_LABELS - 8} user labels (batchrun adds 8)",
                         **_at(doc, "metadata", "labels")))
    for name in manifest.passthrough:
        if name.casefold() in _FOLDED:
            out.append(error(f'passthrough column "{name}" collides with a result field',
                             **_at(doc, "spec", "passthrough"),
                             hint=f"result fields: {', '.join(sorted(RESULT_FIELDS))}"))
    return out


def _check_model(manifest: Manifest, doc: Document) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    known = catalog.known_task(manifest.model)
    if known is None:
        close = difflib.get_close_matches(manifest.model.base, catalog.known_models(), n=1)
        version = manifest.model.short.removeprefix(manifest.model.base)  # "@20241022", or ""
        hint = (f'did you mean "{close[0]}{version}"?' if close
                else "check the Vertex model garden")
        out.append(warning(f'model "{manifest.model.short}" is not in batchrun\'s list of '
                           "batch-capable models", **_at(doc, "spec", "model"), hint=hint))
    elif known is not manifest.task:
        out.append(error(f'"{manifest.model.base}" is a {known} model, but task is '
                         f"{manifest.task}", **_at(doc, "spec", "task")))
    lifecycle = catalog.lifecycle_problem(manifest.model)
    if lifecycle is not None:
        out.append(warning(lifecycle[0], **_at(doc, "spec", "model"), hint=lifecycle[1]))
    out.extend(_check_region(manifest, doc))
    for key, message, is_error in catalog.check_parameters(manifest.family, manifest.parameters):
        make = error if is_error else warning
        where = ("spec", "parameters", key) if key in manifest.parameters else ("spec",)
        out.append(make(message, **_at(doc, *where)))
    for refusal in modelrules.refusals(manifest.model, manifest.parameters):
        out.append(error(refusal.message, **_at(doc, "spec", "parameters", refusal.parameter),
                         hint=refusal.hint))
    if manifest.response.schema is not None and manifest.task is Task.EMBEDDINGS:
        out.append(error("a response schema needs a chat model", **_at(doc, "spec", "response")))
    return out


def _check_region(manifest: Manifest, doc: Document) -> list[Diagnostic]:
    region = manifest.region
    if region is None:
        return []
    own = "region" in doc.data.get("spec", {})
    where = _at(doc, "spec", "region") if own else _at(doc, "spec", "model")
    problem = catalog.region_problem(region, manifest.family)
    if problem is not None and own:  # the project's region is checked with batchrun.yaml
        return [(error if problem[0] else warning)(problem[1], **where, hint=problem[2])]
    if problem is not None and region == "global":  # inherited: allowed for Gemini only
        return [error(f"{problem[1]}; this manifest has it from the project's region "
                      "(batchrun.yaml, BATCHRUN_REGION or --region)", **where,
                      hint="give this manifest its own spec.region, such as us-east5")]
    bigquery = [name for name, kind in (("source", manifest.source.kind.value),
                                        ("destination", manifest.destination.kind.value))
                if kind == "bigquery"]
    if region == "global" and bigquery and manifest.family is Family.GEMINI:
        return [error(f'the global endpoint runs Gemini batch jobs from and to Cloud Storage only, '
                      f'not with a BigQuery {" or ".join(bigquery)}', **where,
                      hint="set spec.region to the BigQuery dataset's region, such as "
                           "us-central1 (a regional endpoint reads and writes BigQuery)")]
    regions = catalog.batch_regions(manifest.model)
    if regions and region not in regions and not catalog.regions_open(manifest.model):
        return [warning(f'{manifest.model.base} batch jobs run in {", ".join(regions)}, not in '
                        f'"{region}" (batchrun\'s catalogue)', **where,
                        hint=f"set spec.region: {regions[0]}, or leave region out of the manifest "
                             "and batchrun.yaml to use the model's own")]
    return []


def _check_import(manifest: Manifest, doc: Document) -> list[Diagnostic]:
    """Parameters Vertex's batch importer would fail the whole job on (importguard), and for
    Gemini the response schema as it is sent (its `$` keywords, nulls and {} already left out:
    rendering/gemini.py), whose property names and depth no rewriting can mend."""
    strict = manifest.family in (Family.GEMINI, Family.GEMINI_EMBEDDINGS)
    found = [error(what, **_at(doc, "spec", "parameters", *path), hint=fix)
             for path, what, fix in importguard.parameter_problems(manifest.parameters, strict)]
    schema = manifest.response.schema
    if manifest.family is Family.GEMINI and schema is not None:
        try:
            importable = gemini.importable_schema(schema)
        except gemini.SchemaTooBig as exc:
            return [*found, error(f"response schema: {exc}; the batch importer takes at most 15 "
                                  "levels", **_at(doc, "spec", "response", "schema"),
                                  hint="flatten it: fewer $refs used inside one another, no "
                                       "recursive definitions")]
        sent = {"generationConfig": {"responseJsonSchema": importable}}
        found += [error(f"response schema: {what}",
                        **_at(doc, "spec", "response", "schema", *path[2:]), hint=fix)
                  for path, what, fix in importguard.parameter_problems(sent, strict=True)]
    return found


def check_manifest(manifest: Manifest, doc: Document) -> list[Diagnostic]:
    return [*_check_names(manifest, doc), *_check_model(manifest, doc),
            *_check_prompt(manifest, doc), *_check_locations(manifest, doc),
            *_check_import(manifest, doc)]


@dataclass(frozen=True, slots=True)
class Claim:
    """What one manifest document of the project writes and reads (scanned, not validated)."""

    name: str
    file: str
    line: int  # of its destination
    document: tuple[Path, int]  # the file and the document's place in it
    destination: tuple[str, str]  # paths.destination_key
    source: str | None  # a local source file, resolved
    templates: tuple[str, ...] = ()  # its template files, resolved


def _other_project(path: Path, root: Path | None) -> Path | None:
    """The batchrun.yaml of a project nested below `root` that `path` lies in, if any."""
    if root is None:
        return None
    for folder in path.parents:
        if folder == root or root not in folder.parents:
            return None
        if (folder / "batchrun.yaml").is_file():
            return folder / "batchrun.yaml"
    return None


def check_ownership(loaded: Iterable[tuple[Manifest, Document]], claims: Iterable[Claim],
                    root: Path | None = None) -> list[Diagnostic]:
    """A destination belongs to exactly one manifest of the whole project (not only of those loaded
    together), and is never a manifest's source file: two writers would overwrite each other's
    answers and pay for them again."""
    claims = list(claims)
    out: list[Diagnostic] = []
    for manifest, doc in loaded:
        key = destination_key(manifest.destination)
        me = (manifest.file.resolve(), doc.index)
        if key[0] == "file" and (other := _other_project(Path(key[1]), root)):
            out.append(error(f"the destination is inside another project ({other})",
                             **_at(doc, "spec", "destination"),
                             hint="each project writes inside itself; move the destination"))
        for claim in claims:
            if claim.document == me:
                continue
            if claim.name == manifest.name:
                out.append(error(f'name "{manifest.name}" is also used in {claim.file} (the '
                                 f"manifest whose destination is at line {claim.line})",
                                 **_at(doc, "metadata", "name"),
                                 hint="manifest names are unique in the project: jobs are found "
                                      "by name"))
            if claim.destination == key:
                out.append(error(f'destination is also written by "{claim.name}" ({claim.file}, '
                                 f"line {claim.line})", **_at(doc, "spec", "destination"),
                                 hint="every manifest needs its own destination"))
        written = key[1] if key[0] == "file" else None
        readers = [c for c in claims if written is not None and c.source == written]
        if manifest.source.kind.value == "file" and manifest.source.location == written:
            out.append(error("the destination is this manifest's own source file",
                             **_at(doc, "spec", "destination"),
                             hint="write results to a file of their own, e.g. out/NAME.jsonl"))
        for claim in readers:
            if claim.document != me:
                out.append(error(f'the destination is the source file of "{claim.name}" '
                                 f"({claim.file})", **_at(doc, "spec", "destination"),
                                 hint="write results to a file of their own, e.g. out/NAME.jsonl"))
    return out

