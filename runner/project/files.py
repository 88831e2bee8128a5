"""Which files are a project's manifests: files named outright, and YAML files below named
folders that look like manifests, never another project's; and how a path is shown. Reads only
file names and the files' text, nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from runner.project.settings import CONFIG_NAME

_YAML_SUFFIXES = (".yaml", ".yml")


def _looks_like_manifest(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "BatchJob" in text or "batchrun/" in text


def _in_other_project(candidate: Path, top: Path) -> bool:
    """A folder below `top` with its own batchrun.yaml is another project: its manifests stay out."""
    folder = candidate.parent
    while folder != top and top in folder.parents:
        if (folder / CONFIG_NAME).is_file():
            return True
        folder = folder.parent
    return False


def find_manifest_files(paths: Iterable[Path], *, shallow: bool = False) -> list[Path]:
    """Files named outright, plus YAML files under named directories that look like manifests
    (with `shallow`, only those in the directories themselves, not below)."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.glob("*") if shallow else path.rglob("*")):
                rel = candidate.relative_to(path).parts
                if (candidate.suffix in _YAML_SUFFIXES and candidate.name != CONFIG_NAME
                        and not any(p.startswith(".") for p in rel)
                        and not _in_other_project(candidate, path)
                        and candidate.is_file() and _looks_like_manifest(candidate)):
                    found[candidate.resolve()] = None
        else:
            found[path.resolve()] = None
    return list(found)


def display_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        try:
            return str(path.relative_to(Path.cwd()))
        except (ValueError, FileNotFoundError):  # elsewhere, or the working folder is gone
            return str(path)
