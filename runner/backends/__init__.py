"""Backend registry: the one table of backends (the CLI's --backend choices come from it, and a test
holds the JSON Schema to it); imports each implementation only when chosen."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

from runner.errors import ConfigError, error

if TYPE_CHECKING:  # the registry itself stays cheap to import: the CLI's --backend choices
    from runner.backends.base import Backend
    from runner.spec import Settings


class Entry(NamedTuple):
    module: str
    cls: str
    needs: str  # what to install when its module cannot be imported
    # Libraries it imports only when it first calls a service: looked for when it is chosen, so
    # their absence is said at once with `needs`, not as a ModuleNotFoundError mid-command.
    requires: tuple[str, ...] = ()


# The distribution is batchrun-vertex ("batchrun" on PyPI is another project): pyproject.toml's
# [project] name, held equal by a test.
GCP_INSTALL: Final = "pip install 'batchrun-vertex[gcp]'"

REGISTRY: Final = {
    "local": Entry("runner.backends.local.backend", "LocalBackend", ""),
    "vertex": Entry("runner.backends.vertex.backend", "VertexBackend", GCP_INSTALL,
                    ("google.auth", "google.cloud.storage", "google.cloud.bigquery")),
}


def missing_libraries(entry: Entry) -> list[str]:
    """Which of the libraries `entry` needs cannot be found (without importing them)."""
    missing = []
    for name in entry.requires:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package is missing, or half-installed
            found = False
        if not found:
            missing.append(name)
    return missing


def libraries_error(backend: str, entry: Entry, missing: Sequence[str]) -> ConfigError:
    return ConfigError([error(
        f"the {backend} backend needs Google's client libraries, which are not installed here "
        f"({', '.join(missing)})",
        hint=f"{entry.needs} (the gcp extra), in the environment batchrun runs from")])


def get_backend(settings: Settings, regions: Sequence[str] = ()) -> Backend:
    """The configured backend; `regions`: where the manifests' jobs run (vertex lists them all)."""
    entry = REGISTRY.get(settings.backend)
    if entry is None:
        raise ConfigError(f'the "{settings.backend}" backend is not available in this version; '
                          f"use one of: {', '.join(REGISTRY)}")
    missing = missing_libraries(entry)
    if missing:
        raise libraries_error(settings.backend, entry, missing)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise libraries_error(settings.backend, entry, [exc.name or str(exc)]) from exc
    backend: Backend = getattr(module, entry.cls)(settings, regions=regions)
    return backend
