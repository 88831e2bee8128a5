"""Issue 22, item 6: what YAML reads that a manifest cannot mean (keys that are not text, .nan and
.inf) is a located error, never a TypeError or a budget switched off; `batchrun init` writes nothing
through a link planted in FOLDER."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import cli, scaffold
from tests.conftest import ProjectDir


def _init(folder: Path) -> tuple[int, str]:
    """`batchrun init proj` run from the folder above proj (paths in messages are relative)."""
    result = CliRunner().invoke(cli.main, ["init", str(folder.relative_to(folder.parent))])
    return result.exit_code, result.stdout + result.stderr


# --- keys that are not text, numbers that are not finite -----------------------------------------

@pytest.mark.parametrize(("labels", "said"), [
    ("{true: x}", "Error: key true is a boolean in YAML, not text\n"
                  "  in triage.yaml, line 5, at metadata.labels.true\n"
                  '  Hint: quote it: "true"\n'),
    ("{1: x}", "Error: key 1 is a number in YAML, not text\n"
               "  in triage.yaml, line 5, at metadata.labels.1\n"
               '  Hint: quote it: "1"\n'),
    ("{null: x}", "Error: key null is null in YAML, not text\n"
                  "  in triage.yaml, line 5, at metadata.labels.null\n"
                  '  Hint: quote it: "null"\n'),
])
def test_a_label_key_that_is_not_text_is_a_located_error(run, project_dir: ProjectDir, labels: str,
                                                        said: str) -> None:  # type: ignore[no-untyped-def]
    root = project_dir.root
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        "  name: triage\n", f"  name: triage\n  labels: {labels}\n"))
    for command in ("validate", "plan"):
        assert run(command, code=1) == said


def test_a_quoted_key_passed_before_does_not_let_the_bare_one_through(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    """The schema's known-valid cache digests the data: `"true":` and `true:` must not share it."""
    root = project_dir.root
    text = (root / "triage.yaml").read_text()
    project_dir.write("triage.yaml", text.replace("  name: triage\n", '  name: triage\n  labels: {"true": x}\n'))
    run("validate")
    project_dir.write("triage.yaml", text.replace("  name: triage\n", "  name: triage\n  labels: {true: x}\n"))
    assert "key true is a boolean in YAML" in run("validate", code=1)


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf"])
def test_max_cost_must_be_finite_in_a_manifest(run, project_dir: ProjectDir, value: str) -> None:  # type: ignore[no-untyped-def]
    root = project_dir.root
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        "  max_attempts: 2\n", f"  max_attempts: 2\n  max_cost: {value}\n"))
    out = run("plan", code=1)
    assert "Error: must be a finite number (got" in out
    assert "in triage.yaml, line 14, at spec.max_cost" in out
    assert not (root / ".batchrun" / "jobs").exists()


def test_a_finite_max_cost_still_holds(run, project_dir: ProjectDir) -> None:  # type: ignore[no-untyped-def]
    root = project_dir.root
    project_dir.write("triage.yaml", (root / "triage.yaml").read_text().replace(
        "  max_attempts: 2\n", "  max_attempts: 2\n  max_cost: 0.0000001\n"))
    assert "over budget" in run("plan", code=4)


# --- init and planted links ----------------------------------------------------------------------

@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A FOLDER to init and, beside it, a folder outside it with a file a link points at."""
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    folder = tmp_path / "proj"
    folder.mkdir()
    return folder, outside


def _tree(folder: Path) -> dict[str, bytes | str]:
    return {str(p.relative_to(folder)): (str(p.readlink()) if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_symlink() or p.is_file()}


@pytest.mark.parametrize(("link", "target"), [
    (".gitignore", "../outside/victim.txt"),
    ("manifests", "../outside"),
    ("batchrun.yaml", "../outside/new.yaml"),  # dangling: it would create the file outside
    (".github", "../outside"),
])
def test_init_writes_nothing_through_a_planted_link(planted: tuple[Path, Path], link: str,
                                                    target: str, golden) -> None:  # type: ignore[no-untyped-def]
    folder, outside = planted
    (folder / link).symlink_to(target)
    inside, beside = _tree(folder), _tree(outside)
    code, out = _init(folder)
    assert code == 1, out
    assert f"init writes nothing through a link, and these are links in proj: {link} (-> {target})" in out
    assert (outside / "victim.txt").read_text() == "precious\n"
    assert _tree(outside) == beside and _tree(folder) == inside  # nothing written anywhere
    if link == ".gitignore":
        golden("init/planted-link.txt", out)


def test_init_refuses_a_gitignore_with_other_hard_links(planted: tuple[Path, Path]) -> None:
    folder, outside = planted
    (folder / ".gitignore").hardlink_to(outside / "victim.txt")
    code, out = _init(folder)
    assert code == 1 and ".gitignore (a file with other hard links)" in out
    assert (outside / "victim.txt").read_text() == "precious\n"


def test_a_link_planted_after_the_check_is_not_followed(planted: tuple[Path, Path]) -> None:
    """The writes themselves follow no link (O_NOFOLLOW at every step), whatever the check saw."""
    import errno
    import os

    folder, outside = planted
    (folder / "manifests").symlink_to(outside)
    root = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as info:
            scaffold._open_below(root, Path("manifests/x.yaml"), os.O_WRONLY | os.O_CREAT)
        assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    finally:
        os.close(root)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_init_still_appends_to_a_real_gitignore(planted: tuple[Path, Path]) -> None:
    folder, _ = planted
    (folder / ".gitignore").write_text("node_modules/")
    code, out = _init(folder)
    assert code == 0, out
    assert (folder / ".gitignore").read_text() == (
        "node_modules/\n# batchrun: local job state and results\n.batchrun/\nout/\n")
    assert (folder / "manifests" / "review-sentiment.yaml").is_file()
