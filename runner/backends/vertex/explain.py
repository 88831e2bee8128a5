"""Turns what Google's libraries raise into one line a user can act on: no credentials, expired
credentials, permission denied, an API not enabled, a bucket or dataset that does not exist. Knows
nothing of plans; wraps the vertex backend's methods."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from runner.errors import BackendError, Diagnostic, error

T = TypeVar("T")
ROLES_HINT = "see the README section \"Who may do what\" for the roles plan and apply need"


def explain(exc: BaseException) -> Diagnostic | None:
    """One diagnostic for a Google error we understand; None for anything else."""
    name = type(exc).__name__
    text = str(exc)
    if name == "DefaultCredentialsError":
        return error("no Google credentials found",
                     hint="run `gcloud auth application-default login`, or set "
                          "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file (or run "
                          "where a service account is attached)")
    if name == "RefreshError":
        return error(f"the Google credentials were refused or have expired ({text[:200]})",
                     hint="run `gcloud auth application-default login` again, or check the "
                          "service account key")
    if name == "Forbidden" or " 403 " in f" {text} ":
        api = re.search(r"([a-z]+\.googleapis\.com)", text)
        if api and re.search(r"has not been used|is disabled|SERVICE_DISABLED", text):
            return error(f"the {api.group(1)} API is not enabled in this project",
                         hint=f"gcloud services enable {api.group(1)}")
        permission = re.search(r"([a-z]+\.[a-zA-Z]+\.[a-zA-Z]+)(?: access|' denied| permission)",
                               text)
        what = f" (missing {permission.group(1)})" if permission else ""
        return error(f"permission denied{what}: {_short(text)}", hint=ROLES_HINT)
    if name == "NotFound":
        bucket = re.search(r"bucket[^a-z0-9]*([a-z0-9][a-z0-9._-]{1,61}[a-z0-9])?", text, re.I)
        if "specified bucket does not exist" in text or (bucket and "bucket" in text.lower()
                                                          and "does not exist" in text):
            return error(f"the Cloud Storage bucket does not exist: {_short(text)}",
                         hint="create it (`gcloud storage buckets create gs://BUCKET "
                              "--location REGION`) or fix staging in batchrun.yaml")
        dataset = re.search(r"Dataset ([\w.:-]+)", text)
        if dataset:
            return error(f"the BigQuery dataset {dataset.group(1)} does not exist",
                         hint="create it in the job's region (`bq mk --dataset --location REGION "
                              f"{dataset.group(1)}`) or fix the table name in the manifest")
        return error(f"not found: {_short(text)}",
                     hint="check the names in the manifest and in batchrun.yaml")
    return None


def _short(text: str) -> str:
    return " ".join(text.split())[:300]


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, BackendError):
        return exc
    found = explain(exc)
    return BackendError([found]) if found is not None else exc


def _wrap_iter(items: Iterator[T]) -> Iterator[T]:
    try:
        yield from items
    except Exception as exc:
        translated = _translate(exc)
        if translated is exc:
            raise
        raise translated from exc


def _wrap(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = method(*args, **kwargs)
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        return _wrap_iter(result) if inspect.isgenerator(result) or (
            isinstance(result, Iterator) and not isinstance(result, str | bytes)) else result

    return wrapper


def explaining(cls: type[T]) -> type[T]:
    """Wrap every public method of a backend class (and its constructor) with `explain`, the
    ones it inherits (the row methods handed to its stores) too."""
    for attr, value in inspect.getmembers(cls, inspect.isfunction):
        if attr == "__init__" or not attr.startswith("_"):
            setattr(cls, attr, _wrap(value))
    return cls
