"""Project settings: batchrun.yaml, its --env overlay, BATCHRUN_* variables and flags, in that order.

File reads only. Flags beat environment variables, which beat the overlay, which beats the file.
"""

from __future__ import annotations

import configparser
import math
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from runner import redact
from runner.errors import ConfigError, Diagnostic, error, warning
from runner.models import catalog
from runner.project import schemas
from runner.project.yamldoc import Document, load_documents
from runner.spec import ExecutorSpec, FamilyQuota, Quota, Settings

CONFIG_NAME: Final = "batchrun.yaml"
ENV_VARS: Final = {
    "backend": "BATCHRUN_BACKEND",
    "project": "BATCHRUN_PROJECT",
    "region": "BATCHRUN_REGION",
    "staging": "BATCHRUN_STAGING",
}
_OVERLAID: Final = ("backend", "project", "region", "staging")


def new_project_id(folder: Path) -> str:
    """An id for a new project (`batchrun init`, or the one doctor and plan suggest): the folder's
    name as a label value, then 6 random hex digits, so two projects in folders of one name differ."""
    slug = re.sub(r"[^a-z0-9]+", "-", folder.name.lower()).strip("-")[:48] or "batchrun"
    return f"{slug}-{secrets.token_hex(3)}"


def find_config(start: Path) -> Path | None:
    """The nearest batchrun.yaml in `start` or a parent directory."""
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([error(f"cannot read {path}: {exc}", file=str(path))]) from exc
    docs, problems = load_documents(text, str(path))
    if problems:
        raise ConfigError(problems)
    if not docs or docs[0].data is None:
        return Document(str(path), 0, {}, {})
    if len(docs) > 1:
        raise ConfigError([error("batchrun.yaml holds one document", file=str(path))])
    problems = schemas.validate(docs[0], "project.v1")
    if problems:
        raise ConfigError(problems)
    return docs[0]


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _executor(raw: Mapping[str, Any]) -> ExecutorSpec:
    fields = dict(raw)
    fields["fail_ids"] = tuple(str(i) for i in fields.get("fail_ids", ()))
    return ExecutorSpec(**fields)


def _quota(raw: Mapping[str, Any]) -> Quota:
    fields = dict(raw)
    fields["families"] = {k: FamilyQuota(**v) for k, v in fields.get("families", {}).items()}
    return Quota(**fields)


def _allowed(value: Any) -> bool | tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else bool(value)


def load_settings(
    *,
    cwd: Path,
    config: Path | None = None,
    environment: str | None = None,
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, list[Diagnostic]]:
    """Resolve the settings; warnings (e.g. an unlisted region) come back beside them."""
    environ = os.environ if environ is None else environ
    flags = flags or {}
    config = config or (Path(environ["BATCHRUN_CONFIG"]) if environ.get("BATCHRUN_CONFIG") else None)
    path = config.resolve() if config else find_config(cwd.resolve())
    if config and not config.is_file():
        raise ConfigError([error(f"no settings file at {config}",
                                 hint="pass --config PATH to an existing batchrun.yaml")])
    doc = _read(path) if path else None
    data: dict[str, Any] = dict(doc.data) if doc else {}
    origins = dict.fromkeys(data, "batchrun.yaml")
    environment = environment or environ.get("BATCHRUN_ENV") or None
    if environment:
        envs = data.get("environments", {})
        if environment not in envs:
            known = ", ".join(sorted(envs)) or "none are defined"
            raise ConfigError([error(f'unknown environment "{environment}"',
                                     file=str(path) if path else None,
                                     hint=f"environments in batchrun.yaml: {known}")])
        data = _merge(data, envs[environment])
        origins.update(dict.fromkeys(envs[environment], f"environment {environment}"))
    for key, var in ENV_VARS.items():
        if environ.get(var):
            data[key] = environ[var]
            origins[key] = var
    for key in _OVERLAID:
        if flags.get(key):
            data[key] = flags[key]
            origins[key] = f"--{key}"
    if data.get("backend", "local") == "vertex" and not data.get("project"):
        found = gcp_project(environ)  # as Google's own clients find it
        if found is not None:
            data["project"], origins["project"] = found
    root = path.parent if path else cwd.resolve()
    local = data.get("local", {})
    settings = Settings(
        root=root,
        config_file=path,
        backend=data.get("backend", "local"),
        project=data.get("project"),
        region=data.get("region"),
        staging=data.get("staging"),
        environment=environment,
        environments=tuple(sorted(data.get("environments", {}))),
        manifests=tuple(data.get("manifests", ())),
        defaults=data.get("defaults", {}),
        quota=_quota(data.get("quota", {})),
        executor=_executor(local.get("executor", {"type": "echo"})),
        model_executors={k: _executor(v) for k, v in local.get("models", {}).items()},
        pricing=data.get("pricing", {}),
        max_cost=data.get("max_cost"),
        retention=float(data.get("retention", 7)),
        origins=origins,
        allow_paths_outside=_allowed(data.get("allow_paths_outside", False)),
        project_id=data.get("id"),
        default_lines={k: doc.line_of(("defaults", "parameters", k))
                       for k in data.get("defaults", {}).get("parameters", {})} if doc else {},
    )
    _remember_secrets(settings, environ)
    return settings, check_settings(settings, environ)


def _gcloud_folder(environ: Mapping[str, str]) -> Path | None:
    """gcloud's configuration folder: CLOUDSDK_CONFIG, else ~/.config/gcloud (%APPDATA%/gcloud on
    Windows); None when the environment names no home to look in."""
    if environ.get("CLOUDSDK_CONFIG"):
        return Path(environ["CLOUDSDK_CONFIG"])
    if os.name == "nt" and environ.get("APPDATA"):
        return Path(environ["APPDATA"]) / "gcloud"
    return Path(environ["HOME"]) / ".config" / "gcloud" if environ.get("HOME") else None


def gcloud_project(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(project, where) as `gcloud config get-value project` would say, read from gcloud's files
    rather than by running it: CLOUDSDK_CORE_PROJECT, else the active configuration's [core]
    project (CLOUDSDK_ACTIVE_CONFIG_NAME, else the folder's active_config, else "default")."""
    if environ.get("CLOUDSDK_CORE_PROJECT"):
        return environ["CLOUDSDK_CORE_PROJECT"], "CLOUDSDK_CORE_PROJECT"
    folder = _gcloud_folder(environ)
    if folder is None:
        return None
    try:
        name = environ.get("CLOUDSDK_ACTIVE_CONFIG_NAME") or (
            (folder / "active_config").read_text(encoding="utf-8").strip() or "default")
    except OSError:
        name = "default"
    path = folder / "configurations" / f"config_{name}"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    project = parser.get("core", "project", fallback="").strip()
    return (project, f"gcloud config ({path})") if project else None


def gcp_project(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The GCP project Google's clients use when none is given: GOOGLE_CLOUD_PROJECT (or the
    legacy GCLOUD_PROJECT), then gcloud's configured project."""
    for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        if environ.get(var):
            return environ[var], var
    return gcloud_project(environ)


def _remember_secrets(settings: Settings, environ: Mapping[str, str]) -> None:
    """Every key and URL password the executors will use, masked wherever text leaves us."""
    for spec in (settings.executor, *settings.model_executors.values()):
        if spec.api_key_env and environ.get(spec.api_key_env):
            redact.remember([environ[spec.api_key_env]])
        redact.remember(redact.url_secrets(spec.base_url))


def _missing_keys(settings: Settings, environ: Mapping[str, str], file: str | None) -> list[
        Diagnostic]:
    """A local executor whose api_key_env is not set would be refused by its endpoint (401) on
    every row: say so before anything is sent."""
    if settings.backend != "local":
        return []
    out = []
    executors = [("local.executor", settings.executor)] + [
        (f"local.models.{pattern}", spec) for pattern, spec in settings.model_executors.items()]
    for path, spec in executors:
        if spec.api_key_env and not environ.get(spec.api_key_env):
            out.append(error(f"the environment variable {spec.api_key_env} (api_key_env) is not "
                             "set", file=file, path=f"{path}.api_key_env",
                             hint=f"export {spec.api_key_env}=... before running batchrun, or "
                                  "remove api_key_env if the endpoint needs no key"))
    return out


def check_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> list[
        Diagnostic]:
    """What the schema cannot say: backend choices, regions, required vertex settings, keys."""
    file = str(settings.config_file) if settings.config_file else None
    out: list[Diagnostic] = _missing_keys(settings, os.environ if environ is None else environ,
                                          file)
    if settings.backend not in schemas.load_schema("project.v1")["properties"]["backend"]["enum"]:
        out.append(error(f'unknown backend "{settings.backend}" (from '
                         f'{settings.origins.get("backend", "default")})', file=file,
                         hint="use local or vertex"))
    for key in ("max_cost", "retention"):  # YAML's .nan and .inf pass a JSON Schema minimum
        value = getattr(settings, key)
        if isinstance(value, float) and not math.isfinite(value):
            out.append(error(f"{key} must be a number, not {value}", file=file, path=key,
                             hint=f"give {key} as a plain number"))
    region = settings.region
    # `global` runs Gemini's batch jobs only: each manifest that inherits it is checked for that
    problem = catalog.region_problem(region) if region not in (None, "global") else None
    if problem is not None:
        is_error, message, hint = problem
        out.append((error if is_error else warning)(message, file=file, path="region", hint=hint))
    if settings.backend == "vertex":
        for key in ("project", "staging"):  # a region comes from the manifest or the model
            if getattr(settings, key) is None:
                also = (", GOOGLE_CLOUD_PROJECT or `gcloud config set project ID`"
                        if key == "project" else f" or {ENV_VARS[key]}")
                where = f", {ENV_VARS[key]}" if key == "project" else ""
                out.append(error(f"the vertex backend needs {key}", file=file, path=key,
                                 hint=f"set {key} in batchrun.yaml{where}{also}"))
    return out
