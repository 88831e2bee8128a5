"""Which project a command is about: the nearest batchrun.yaml above the manifests it was given
(or above the working folder when none were), never simply the folder it runs in. File reads only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError, Diagnostic, error, warning
from runner.settings import CONFIG_NAME, find_config


@dataclass(frozen=True, slots=True)
class Located:
    """Where the project is: its batchrun.yaml (None when there is none), and the folder the
    search started from (the project root when there is no batchrun.yaml)."""

    config: Path | None
    start: Path
    paths: tuple[Path, ...]  # the PATHS given, absolute


def locate(paths: Sequence[str | Path], cwd: Path, config: Path | None,
           environ: Mapping[str, str]) -> Located:
    """--config or BATCHRUN_CONFIG if given; else the one batchrun.yaml every PATH lies under.
    PATHS of two projects are refused, naming both."""
    absolute = tuple((Path(p) if Path(p).is_absolute() else cwd / p).resolve() for p in paths)
    explicit = config or (Path(environ["BATCHRUN_CONFIG"]) if environ.get("BATCHRUN_CONFIG")
                          else None)
    starts = [p if p.is_dir() else p.parent for p in absolute] or [cwd.resolve()]
    if explicit is not None:
        return Located(explicit.resolve() if explicit.is_file() else explicit, starts[0],
                       absolute)
    found: dict[Path | None, Path] = {}
    for start, given in zip(starts, absolute or starts, strict=True):
        found.setdefault(find_config(start), given)
    if len(found) > 1:
        roots = [f"{given} is in {c.parent if c else 'no project'}" for c, given in found.items()]
        raise ConfigError([error("the paths given belong to different projects: "
                                 + "; ".join(roots),
                                 hint="run batchrun once per project (each folder with a "
                                      f"{CONFIG_NAME}), or pass --config")])
    return Located(next(iter(found)), starts[0], absolute)


def no_project_note(located: Located) -> Diagnostic:
    """validate and render work without a project; they say so, once."""
    return warning(f"no {CONFIG_NAME} found in {located.start} or any parent: checked with the "
                   "default settings; `batchrun init` starts a project (plan and apply need one)")


def no_project_error(start: Path) -> ConfigError:
    return ConfigError([error(f"no {CONFIG_NAME} found in {start} or any parent",
                              hint="run `batchrun init`, or pass --config PATH/batchrun.yaml")])
