"""Which of a project's manifests a run is about: `--target NAME` (a name or a glob, as fnmatch
reads it) and `--select label:KEY=VALUE` (the manifests' labels, the value a glob too). Pure."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from runner.errors import ConfigError, ManifestError, error
from runner.spec import Manifest

SELECT_HINT = "give --select label:KEY=VALUE (VALUE may be a glob: label:team=*)"


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _label(selector: str) -> tuple[str, str]:
    kind, _, rest = selector.partition(":")
    key, equals, value = rest.partition("=")
    if kind != "label" or not key or not equals:
        raise ConfigError([error(f'cannot read --select "{selector}"', hint=SELECT_HINT)])
    return key, value


def select(manifests: Sequence[Manifest], targets: Sequence[str] = (),
           selectors: Sequence[str] = ()) -> list[Manifest]:
    """The manifests matching any --target (when some are given) and any --select (when some are
    given), in their order. A --target or --select that matches nothing is an error: a typo
    must not quietly plan nothing."""
    chosen = list(manifests)
    names = [m.name for m in manifests]
    if targets:
        problems = []
        for target in targets:
            if any(fnmatch.fnmatchcase(name, target) for name in names):
                continue
            close = difflib.get_close_matches(target, names, n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"manifests: {', '.join(names)}"
            problems.append(error(f'no manifest matches "{target}"' if _is_glob(target)
                                  else f'no manifest named "{target}"', hint=hint))
        if problems:
            raise ManifestError(problems)
        chosen = [m for m in chosen if any(fnmatch.fnmatchcase(m.name, t) for t in targets)]
    if selectors:
        wanted = [_label(s) for s in selectors]

        def labelled(m: Manifest) -> bool:
            return any(key in m.labels and fnmatch.fnmatchcase(m.labels[key], value)
                       for key, value in wanted)

        if not any(labelled(m) for m in manifests):
            raise ManifestError([error(f'no manifest has the label{"s" if len(wanted) > 1 else ""} '
                                       + ", ".join(f"{k}={v}" for k, v in wanted),
                                       hint="labels are metadata.labels in each manifest (and "
                                            "defaults.labels in batchrun.yaml)")])
        chosen = [m for m in chosen if labelled(m)]
    return chosen
