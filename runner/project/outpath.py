"""Where a command may write the file a flag asks for (report -o, plan --out, preview --html): never
over one of the project's files — a manifest, a source, a destination or its sidecar, a template,
batchrun.yaml — nor inside .batchrun/. Reads only what the file system says about links and folders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from runner.errors import Diagnostic, error
from runner.project.paths import in_state_dir, sidecar_of
from runner.project.settings import CONFIG_NAME
from runner.spec import Settings

if TYPE_CHECKING:
    from runner.project.checks import Claim

STATE_DIR: Final = ".batchrun"


def project_files(claims: Iterable[Claim], manifest_files: Iterable[Path]) -> dict[Path, str]:
    """Each file of the project (symlinks resolved) -> what it is, in words. A destination that
    does not exist yet is listed too: its first answers would land there."""
    out: dict[Path, str] = {f.resolve(): "a manifest file" for f in manifest_files}
    for claim in claims:
        owner = f'"{claim.name}" ({claim.file})'
        if claim.destination[0] == "file":
            dest = Path(claim.destination[1])
            out[dest] = f"the destination of {owner}, which holds its answers"
            out[sidecar_of(dest)] = f"the record of the jobs collected into the destination of {owner}"
        if claim.source is not None:
            out.setdefault(Path(claim.source), f"the source file of {owner}")
        for template in claim.templates:
            out.setdefault(Path(template), f"a template file of {owner}")
    return out


def refusal(path: Path, flag: str, settings: Settings,
            files: Mapping[Path, str]) -> Diagnostic | None:
    """Why `flag` may not write `path` (None when it may): relative paths and symlinks are
    resolved first, so a link to a destination, or `out/../out/x.jsonl`, is that destination."""
    real = path.resolve()
    what = files.get(real)
    if what is None and real.name == CONFIG_NAME:
        what = f"a project's settings file ({CONFIG_NAME})"
    if what is None and (STATE_DIR in real.parts or in_state_dir(real, settings)):
        what = f"inside {STATE_DIR}/, batchrun's own state"
    if what is None and real.is_dir():
        what = "a folder"
    if what is not None:
        return error(f"{flag} {path}: refusing to write there: it is {what}",
                     hint=f"give {flag} a path of its own; a command's output never replaces a "
                          "file of the project")
    if not real.parent.is_dir():
        return error(f"{flag} {path}: cannot write there: the folder {path.parent} does not exist",
                     hint=f"create it, or give {flag} another path")
    return None
