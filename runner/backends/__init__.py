"""Backend registry: the one table of backends (the CLI's --backend choices come from it, and a test
holds the JSON Schema to it); imports each implementation only when chosen."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

from runner.errors import ConfigError

if TYPE_CHECKING:  # the registry itself stays cheap to import: the CLI's --backend choices
    from runner.backends.base import Backend
    from runner.spec import Settings


class Entry(NamedTuple):
    module: str
    cls: str
    needs: str  # what to install when its module cannot be imported


REGISTRY: Final = {
    "local": Entry("runner.backends.local.backend", "LocalBackend", ""),
    "vertex": Entry("runner.backends.vertex.backend", "VertexBackend",
                    "pip install 'batchrun-vertex[gcp]'"),
}


def get_backend(settings: Settings, regions: Sequence[str] = ()) -> Backend:
    """The configured backend; `regions`: where the manifests' jobs run (vertex lists them all)."""
    entry = REGISTRY.get(settings.backend)
    if entry is None:
        raise ConfigError(f'the "{settings.backend}" backend is not available in this version; '
                          f"use one of: {', '.join(REGISTRY)}")
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise ConfigError(f"the {settings.backend} backend needs libraries that are not "
                          f"installed: {entry.needs}") from exc
    backend: Backend = getattr(module, entry.cls)(settings, regions=regions)
    return backend
