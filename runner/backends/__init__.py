"""Backend registry: picks the implementation for the settings; imports each one only when chosen."""

from __future__ import annotations

from runner.backends.base import Backend
from runner.errors import ConfigError
from runner.spec import Settings


def get_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        from runner.backends.local.backend import LocalBackend

        return LocalBackend(settings)
    if settings.backend == "vertex":
        try:
            from runner.backends.vertex.backend import VertexBackend
        except ImportError as exc:
            raise ConfigError("the vertex backend needs the Google libraries: "
                              "pip install 'batchrun[gcp]'") from exc
        return VertexBackend(settings)
    raise ConfigError(f'the "{settings.backend}" backend is not available in this version; '
                      "use backend: local")
