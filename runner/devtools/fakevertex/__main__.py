"""`python -m runner.fakevertex --port 0` serves the fake Vertex AI API on loopback."""

from __future__ import annotations

from runner.devtools.fakevertex.routes import main

main()
