"""Loads manifests: finds files, parses YAML, validates against the schema, then builds spec.Manifest.

File reads only (the manifests, template files and a local source's header). Every problem of every
file is collected before ManifestError is raised; checks the schema cannot express live in checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner import identity
from runner.errors import Diagnostic, ManifestError, error, warning
from runner.models import catalog
from runner.models import rules as modelrules
from runner.project import checks, schemas
from runner.project.files import display_path, find_manifest_files
from runner.project.paths import OUTSIDE_HINT, destination_key, in_state_dir, outside_project
from runner.project.yamldoc import Document, load_documents
from runner.spec import (
    DestinationKind,
    DestinationSpec,
    Family,
    Manifest,
    ModelRef,
    PromptSpec,
    ResponseSpec,
    Settings,
    SourceKind,
    SourceSpec,
    Task,
    Template,
)

__all__ = ["find_manifest_files", "load_manifests", "scan_claims"]

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
            ".parquet": "parquet"}
_RESULT_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json", ".csv"})  # no Parquet destination yet


def _template(raw: Any, where: str, base: Path, problems: list[Diagnostic], doc: Document,
              path: tuple[str | int, ...], settings: Settings) -> Template | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Template(raw, where, doc.line_of(path))
    file = base / raw["file"]
    if in_state_dir(file, settings):
        problems.append(error(f"template file {raw['file']} is inside .batchrun/, batchrun's own "
                              "state", file=doc.file, line=doc.line_of((*path, "file")),
                              path=".".join(str(p) for p in (*path, "file"))))
        return None
    if outside_project(file, settings):
        problems.append(error(f"template file {raw['file']} is outside the project",
                              file=doc.file, line=doc.line_of((*path, "file")),
                              path=".".join(str(p) for p in (*path, "file")), hint=OUTSIDE_HINT))
        return None
    try:
        return Template(file.read_text(encoding="utf-8"), str(raw["file"]),
                        doc.line_of((*path, "file")))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(error(f"cannot read template file {raw['file']}: "
                              f"{getattr(exc, 'strerror', None) or exc}",
                              file=doc.file, line=doc.line_of((*path, "file")),
                              path=".".join(str(p) for p in (*path, "file")),
                              hint="template files are read relative to the manifest"))
        return None


def _prompt(raw: Mapping[str, Any], base: Path, problems: list[Diagnostic],
            doc: Document, settings: Settings) -> PromptSpec:
    def t(key: str) -> Template | None:
        return _template(raw.get(key), f"spec.prompt.{key}", base, problems, doc,
                         ("spec", "prompt", key), settings)

    examples = []
    for i, ex in enumerate(raw.get("examples", ())):
        u = _template(ex["user"], f"spec.prompt.examples[{i}].user", base, problems, doc,
                      ("spec", "prompt", "examples", i, "user"), settings)
        a = _template(ex["assistant"], f"spec.prompt.examples[{i}].assistant", base, problems,
                      doc, ("spec", "prompt", "examples", i, "assistant"), settings)
        if u is not None and a is not None:
            examples.append((u, a))
    return PromptSpec(system=t("system"), user=t("user"), examples=tuple(examples),
                      input=t("input"))


# The fields a backend may refuse past loading, whose lines a manifest keeps (Manifest.lines).
_LOCATED: tuple[tuple[str, ...], ...] = (
    ("spec", "source", "id"), ("spec", "passthrough"), ("spec", "source", "bigquery", "table"),
    ("spec", "source", "bigquery", "query"), ("spec", "destination", "bigquery", "table"))


def _passthrough(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The passthrough columns; with a hashed id, the id column too, so results keep the real id."""
    out = tuple(spec.get("passthrough", ()))
    raw_id = spec.get("source", {}).get("id")
    if isinstance(raw_id, Mapping) and raw_id.get("hash") and raw_id.get("column") not in out:
        out += (str(raw_id["column"]),)
    return out


def _source(raw: Mapping[str, Any], base: Path, problems: list[Diagnostic], settings: Settings,
            doc: Document, row_bytes: int) -> SourceSpec:
    """The source as written; `row_bytes`: the family's request limit, a local row longer than
    which is refused as it is read."""
    fmt = raw.get("format")
    columns = tuple(raw["columns"]) if "columns" in raw else None
    default_id = "custom_id" if fmt == "requests" else ""
    id_raw = raw.get("id", default_id)
    id_column = id_raw.get("column", "") if isinstance(id_raw, Mapping) else id_raw
    id_hash = bool(id_raw.get("hash")) if isinstance(id_raw, Mapping) else False
    if not id_column:
        problems.append(error('missing required field "id"', file=doc.file,
                              line=doc.line_of(("spec", "source")), path="spec.source.id",
                              hint="name the column that identifies a row, e.g. id: ticket_id"))
    if "file" in raw:
        path = (base / raw["file"]).resolve()
        if outside_project(path, settings):
            problems.append(error(f'source file "{raw["file"]}" is outside the project',
                                  file=doc.file, line=doc.line_of(("spec", "source", "file")),
                                  path="spec.source.file", hint=OUTSIDE_HINT))
        if fmt is None:
            fmt = _FORMATS.get(path.suffix.lower())
            if fmt is None:
                problems.append(error(f'cannot tell the format of "{raw["file"]}"',
                                      file=doc.file, line=doc.line_of(("spec", "source", "file")),
                                      path="spec.source.format",
                                      hint="name the file .jsonl, .csv or .parquet, or set format"))
                fmt = "jsonl"
        if not path.is_file():
            problems.append(error(f'source file "{raw["file"]}" does not exist', file=doc.file,
                                  line=doc.line_of(("spec", "source", "file")),
                                  path="spec.source.file",
                                  hint="paths are relative to the manifest's folder"))
        return SourceSpec(SourceKind.FILE, str(path), fmt, id_column, columns, id_hash=id_hash,
                          max_id_chars=settings.quota.max_id_chars,
                          max_row_bytes=row_bytes)
    if "bigquery" in raw:
        bq = raw["bigquery"]
        key = "query" if "query" in bq else "table"
        return SourceSpec(SourceKind.BIGQUERY, bq.get("table") or bq["query"],
                          "requests" if fmt == "requests" else "bigquery", id_column, columns,
                          is_query="query" in bq, id_hash=id_hash,
                          max_id_chars=settings.quota.max_id_chars,
                          line=doc.line_of(("spec", "source", "bigquery", key)))
    uris = tuple(raw["gcs"]["uris"])
    if fmt == "parquet":
        problems.append(error("Parquet is read from local files only; a Cloud Storage source is "
                              "JSONL", file=doc.file, line=doc.line_of(("spec", "source", "format")),
                              path="spec.source.format",
                              hint="export the objects as JSONL, or copy the Parquet file into "
                                   "the project and name it under spec.source.file"))
    return SourceSpec(SourceKind.GCS, uris[0], fmt or "jsonl", id_column, columns, uris=uris,
                      id_hash=id_hash, max_id_chars=settings.quota.max_id_chars)


def _place(raw: Mapping[str, Any], settings: Settings, problems: list[Diagnostic] | None,
           doc: Document | None) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """The destination the settings' environment writes to (its own under `environments`, else
    the manifest's), and where it is in the document. Names batchrun.yaml does not define are
    errors: a typo would send CI's answers to the local file, lost with the checkout."""
    places = raw.get("environments", {})
    if problems is not None and doc is not None:
        known = ", ".join(settings.environments) or "none are defined"
        for name in places:
            if name not in settings.environments:
                problems.append(error(
                    f'destination for environment "{name}", which batchrun.yaml does not define',
                    file=doc.file, line=doc.line_of(("spec", "destination", "environments", name)),
                    path=f"spec.destination.environments.{name}",
                    hint=f"environments in batchrun.yaml: {known}"))
    env = settings.environment
    if env is not None and env in places:
        return places[env], ("spec", "destination", "environments", env)
    return raw, ("spec", "destination")


def _destination(whole: Mapping[str, Any], base: Path, settings: Settings,
                 problems: list[Diagnostic] | None = None,
                 doc: Document | None = None) -> DestinationSpec:
    raw, at = _place(whole, settings, problems, doc)
    adopt = bool(raw.get("adopt", False))
    root = settings.root
    if "file" in raw:
        path = (base / raw["file"]).resolve()
        if problems is not None and doc is not None:
            where = {"file": doc.file, "line": doc.line_of((*at, "file")),
                     "path": ".".join((*at, "file"))}
            if path.is_dir() or path.suffix.lower() not in _RESULT_SUFFIXES or path.name.endswith(
                    ".batchrun.json"):
                problems.append(error(f'destination "{raw["file"]}" is not a result file name',
                                      **where, hint="name a file ending in .jsonl or .csv, "
                                                    "e.g. out/NAME.jsonl"))
            elif in_state_dir(path, settings):
                problems.append(error(f'destination "{raw["file"]}" is inside .batchrun/, '
                                      "batchrun's own state", **where,
                                      hint="write results elsewhere in the project, e.g. out/"))
            elif outside_project(path, settings):
                problems.append(error(f'destination "{raw["file"]}" is outside the project',
                                      **where, hint=OUTSIDE_HINT))
        try:
            ident = path.relative_to(root).as_posix()
        except ValueError:
            ident = path.as_posix()
        return DestinationSpec(DestinationKind.FILE, str(path), ident, adopt)
    if "bigquery" in raw:
        table = raw["bigquery"]["table"]
        return DestinationSpec(DestinationKind.BIGQUERY, table, table, adopt)
    prefix = raw["gcs"]["prefix"].rstrip("/") + "/"
    return DestinationSpec(DestinationKind.GCS, prefix, prefix, adopt)


def _parameters(model: ModelRef, name: str, spec: Mapping[str, Any], settings: Settings,
                notes: list[Diagnostic]) -> dict[str, Any]:
    """defaults.parameters under the manifest's own, less the defaults this model refuses: those
    are left out for it, with a warning, rather than sent to fail every row."""
    defaults = settings.defaults.get("parameters", {})
    merged, dropped = modelrules.drop_refused_defaults(model, defaults, spec.get("parameters", {}))
    file = str(settings.config_file) if settings.config_file else None
    for refusal in dropped:
        key = refusal.parameter
        notes.append(warning(f"defaults.parameters.{key} is not sent to "
                             f"{model.base.split('/', 1)[1]} (manifest {name}): {refusal.reason}",
                             file=file, line=settings.default_lines.get(key),
                             path=f"defaults.parameters.{key}", hint=refusal.hint))
    return merged


def _build(doc: Document, path: Path, settings: Settings, problems: list[Diagnostic],
           notes: list[Diagnostic]) -> Manifest | None:
    data = doc.data
    meta, spec = data["metadata"], data["spec"]
    defaults = settings.defaults
    model = catalog.parse_model(spec["model"])
    if model is None:
        problems.append(error(f'"{spec["model"]}" is not a model name', file=doc.file,
                              line=doc.line_of(("spec", "model")), path="spec.model",
                              hint="write publisher/model[@version], e.g. "
                                   "anthropic/claude-haiku-4-5@20251001"))
        return None
    task = Task(spec["task"]) if "task" in spec else (catalog.known_task(model) or Task.CHAT)
    base = path.parent
    manifest = Manifest(
        name=meta["name"],
        file=path,
        line=doc.line_of(()),
        model=model,
        task=task,
        family=catalog.family_of(model, task),
        # 0 and 0.0 mean the same to the model; one spelling keeps request bytes and hashes stable.
        parameters=identity.normalise(_parameters(model, meta["name"], spec, settings, notes)),
        source=_source(spec["source"], base, problems, settings, doc,
                       settings.quota.request_bytes(catalog.family_of(model, task))),
        prompt=_prompt(spec.get("prompt", {}), base, problems, doc, settings),
        destination=_destination(spec["destination"], base, settings, problems, doc),
        response=ResponseSpec(
            format=spec.get("response", {}).get(
                "format", "json" if "schema" in spec.get("response", {}) else "text"),
            schema=spec.get("response", {}).get("schema"),
        ),
        passthrough=_passthrough(spec),
        max_attempts=spec.get("max_attempts", defaults.get("max_attempts", 3)),
        protect=spec.get("protect", defaults.get("protect", False)),
        labels={**defaults.get("labels", {}), **meta.get("labels", {})},
        description=meta.get("description", ""),
        max_cost=spec.get("max_cost"),
        on_change=spec.get("on_change", "rerun"),
        region=spec.get("region") or settings.region or next(iter(catalog.batch_regions(model)),
                                                             None),
        lines={".".join(key): doc.line_of(key) for key in _LOCATED},
    )
    if manifest.family in (Family.OPENAI_EMBEDDINGS, Family.GEMINI_EMBEDDINGS):
        manifest = replace(manifest, destination=replace(manifest.destination, vectors=True))
    templates = [t.text for t in manifest.prompt.templates()]
    return replace(manifest, spec_hash=identity.spec_hash(manifest),
                   digest=identity.digest(identity.canonical_json({"doc": data,
                                                                   "templates": templates})))


def _load_file(path: Path, settings: Settings,
               problems: list[Diagnostic]) -> list[tuple[Manifest, Document]]:
    shown = display_path(path, settings.root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(error(f"no such file: {shown}"))
        return []
    except UnicodeDecodeError as exc:
        problems.append(error(f"{shown} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                              f"at offset {exc.start})", file=shown))
        return []
    docs, yaml_problems = load_documents(text, shown)
    problems.extend(yaml_problems)
    out = []
    for doc in docs:
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            problems.append(error("a manifest document must be a mapping", file=shown,
                                  line=doc.line_of(()),
                                  hint="start it with apiVersion: batchrun/v1 and kind: BatchJob"))
            continue
        schema_problems = schemas.validate(doc, "manifest.v1")
        if schema_problems:
            problems.extend(schema_problems)
            continue
        before = len(problems)
        notes: list[Diagnostic] = []
        manifest = _build(doc, path, settings, problems, notes)
        if manifest is None or len(problems) > before:
            continue
        problems.extend(notes)
        problems.extend(checks.check_manifest(manifest, doc))
        out.append((manifest, doc))
    return out


def scan_claims(paths: Iterable[Path], settings: Settings) -> list[checks.Claim]:
    """What every manifest of the project writes and reads, from its YAML alone: enough to tell
    who owns a destination, whatever PATHS a command was given. Broken documents claim nothing
    here; they are reported when they are loaded themselves."""
    claims = []
    for path in find_manifest_files(paths):
        try:
            docs, _ = load_documents(path.read_text(encoding="utf-8"), display_path(
                path, settings.root))
        except (OSError, UnicodeDecodeError):
            continue
        for doc in docs:
            data = doc.data
            try:
                spec, name = data["spec"], str(data["metadata"]["name"])
                dest = _destination(spec["destination"], path.parent, settings)
                source = spec["source"].get("file")
            except (KeyError, TypeError, AttributeError):
                continue
            claims.append(checks.Claim(
                name=name, file=doc.file, line=doc.line_of(("spec", "destination")),
                document=(path.resolve(), doc.index), destination=destination_key(dest),
                source=str((path.parent / source).resolve()) if isinstance(source, str) else None,
                templates=tuple(str((path.parent / f).resolve())
                                for f in _template_files(spec.get("prompt")))))
    return claims


def _template_files(prompt: Any) -> list[str]:
    """The `{file: ...}` templates of a prompt as written (scanned, not validated)."""
    if not isinstance(prompt, Mapping):
        return []
    found = [prompt.get(k) for k in ("system", "user", "input")]
    for example in prompt.get("examples") or ():
        if isinstance(example, Mapping):
            found += [example.get("user"), example.get("assistant")]
    return [t["file"] for t in found if isinstance(t, Mapping) and isinstance(t.get("file"), str)]


def load_manifests(paths: Iterable[Path], settings: Settings, project: Iterable[Path] = (),
                   *, shallow: bool = False) -> tuple[list[Manifest], list[Diagnostic]]:
    """Every manifest under `paths`, or ManifestError with every problem found (warnings beside).
    `project`: where the rest of the project's manifests are, to check who owns a destination.
    `shallow`: directories' own files only (no project: the tree below is not ours to read)."""
    problems: list[Diagnostic] = []
    loaded: list[tuple[Manifest, Document]] = []
    paths = list(paths)
    files = find_manifest_files(paths, shallow=shallow)
    for path in files:
        loaded.extend(_load_file(path, settings, problems))
    problems.extend(checks.check_ownership(
        loaded, scan_claims(files if shallow else [*paths, *project], settings),
        settings.root.resolve() if settings.config_file else None))
    if not files and settings.config_file is None:
        problems.append(error(f"no batchrun.yaml found in {settings.root} or any parent, and no "
                              "manifests here", hint="run `batchrun init`, or pass --config"))
    elif not files:
        problems.append(error("no manifests found",
                              hint="pass manifest files or folders, or list them under "
                                   "manifests: in batchrun.yaml"))
    problems.sort(key=Diagnostic.sort_key)
    if any(p.is_error for p in problems):
        raise ManifestError(problems)
    return [m for m, _ in loaded], problems
