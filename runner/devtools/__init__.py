"""Tools for tests and trials: the emulators, the fake Vertex server, try-vertex; never used by a run."""
