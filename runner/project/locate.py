"""Which project a command is about: the nearest batchrun.yaml above the manifests it was given
(or above the working folder when none were), never simply the folder it runs in; its settings and
the manifests a run selects. File reads only.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.errors import ConfigError, Diagnostic, ManifestError, error, warning
from runner.project import manifest as manifest_loader
from runner.project import selection
from runner.project.settings import CONFIG_NAME, find_config, load_settings
from runner.spec import Manifest, Settings


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


@dataclass(frozen=True)
class Project:
    """Settings plus every manifest they select, validated."""

    settings: Settings
    manifests: tuple[Manifest, ...]
    warnings: tuple[Diagnostic, ...] = ()

    def manifest(self, name: str) -> Manifest:
        for m in self.manifests:
            if m.name == name:
                return m
        names = [m.name for m in self.manifests]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f'did you mean "{close[0]}"?' if close else f"manifests: {', '.join(names)}"
        raise ManifestError([error(f'no manifest named "{name}"', hint=hint)])


def load_project(
    paths: Sequence[str | Path] = (),
    *,
    cwd: Path | None = None,
    config: Path | None = None,
    environment: str | None = None,
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    targets: Sequence[str] = (),
    selectors: Sequence[str] = (),
    require: bool = False,
) -> Project:
    """The project the manifests under `paths` belong to: the nearest batchrun.yaml above them
    (above `cwd` when no paths are given), its settings, and those manifests (default: all of the
    project's). The working folder never decides the project for paths given elsewhere.

    Without a batchrun.yaml there is no project: with `require` (every command that keeps
    state), that is refused before anything is read; else (validate, render) only the files
    given, or the folder's own manifest files, are read, never the tree below it."""
    if cwd is None:
        try:
            cwd = Path.cwd()
        except FileNotFoundError:
            raise ConfigError([error("the current folder no longer exists",
                                     hint="cd into an existing folder and run the command "
                                          "again")]) from None
    located = locate(paths, cwd, config, os.environ if environ is None else environ)
    if require and located.config is None:
        raise no_project_error(located.start)
    settings, setting_warnings = load_settings(cwd=located.start, config=located.config,
                                               environment=environment, flags=flags,
                                               environ=environ)
    if any(d.is_error for d in setting_warnings):
        raise ConfigError(setting_warnings)
    everything = [settings.root / p for p in settings.manifests] or [settings.root]
    chosen = list(located.paths) or everything
    manifests, warnings = manifest_loader.load_manifests(
        chosen, settings, project=everything if settings.config_file else (),
        shallow=settings.config_file is None and not located.paths)
    if settings.config_file is None:
        warnings.insert(0, no_project_note(located))
    manifests = selection.select(manifests, targets, selectors)
    return Project(settings, tuple(manifests), tuple(setting_warnings) + tuple(warnings))
