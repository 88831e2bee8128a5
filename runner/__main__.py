"""`python -m runner` runs the CLI."""

from __future__ import annotations

from runner.cli.commands import main

main()
