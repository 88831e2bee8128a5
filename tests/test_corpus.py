"""The bad-input corpus (tests/data/corpus/<case>/): each broken manifest or source gets one clear
message, golden in tests/golden/corpus/<case>.txt, and never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import commands as cli

CORPUS = Path(__file__).parent / "data" / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_corpus_case(case: str, golden, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(CORPUS)
    result = CliRunner().invoke(cli.main, ["plan", case])
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert result.exit_code == (0 if case in ("empty-source", "bom-crlf") else 1), text
    golden(f"corpus/{case}.txt", text.replace(str(CORPUS) + "/", ""))
