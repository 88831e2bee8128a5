"""Which local paths a manifest may read and write: inside its project, after symlinks are
resolved, unless batchrun.yaml allows more; never batchrun's own .batchrun/ state. Pure: it reads
only what the file system says about links."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from runner.spec import DestinationKind, DestinationSpec, Settings


def allowed_roots(settings: Settings) -> tuple[Path, ...] | None:
    """The folders local paths must be in; None when batchrun.yaml allows any, or when there is no
    batchrun.yaml (no project, so no boundary: `validate` of loose files)."""
    extra = settings.allow_paths_outside
    if extra is True or settings.config_file is None:
        return None
    roots = [settings.root.resolve()]
    if isinstance(extra, tuple):
        roots += [(settings.root / folder).resolve() for folder in extra]
    return tuple(roots)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def outside_project(path: Path, settings: Settings) -> bool:
    """Whether `path` (symlinks resolved) is outside every folder the project may use."""
    roots = allowed_roots(settings)
    if roots is None:
        return False
    real = path.resolve()
    return not any(_within(real, root) for root in roots)


def in_state_dir(path: Path, settings: Settings) -> bool:
    return _within(path.resolve(), settings.state_dir.resolve())


def sidecar_of(destination: Path) -> Path:
    """The hidden file beside a local destination that lists the jobs collected into it."""
    return destination.with_name(f".{destination.name}.batchrun.json")


def destination_key(dest: DestinationSpec) -> tuple[str, str]:
    """One spelling per place: two manifests writing it are the same owner twice."""
    if dest.kind is DestinationKind.FILE:
        return dest.kind.value, str(Path(dest.location).resolve())
    if dest.kind is DestinationKind.GCS:
        return dest.kind.value, dest.location.rstrip("/") + "/"
    return dest.kind.value, dest.location.replace(":", ".").strip("`")


def destination_lock(dest: DestinationSpec) -> str:
    """The lock name of a destination: every manifest and project writing it takes this one."""
    kind, where = destination_key(dest)
    return "destination-" + hashlib.sha256(f"{kind}:{where}".encode()).hexdigest()[:20]


def is_destination_lock(name: str) -> bool:
    return re.fullmatch(r"destination-[0-9a-f]{20}", name) is not None


OUTSIDE_HINT = ("move it into the project, or allow its folder with allow_paths_outside: "
                "[FOLDER] in batchrun.yaml")
