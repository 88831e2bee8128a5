# make demo: install, then run the whole loop on the local examples. make test: ruff, mypy, pytest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The demo needs only the runtime dependencies: its own small environment, quick on a fresh clone.
DEMO_VENV ?= .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO := cd configs && ../$(DEMO_VENV)/bin/batchrun

PY313 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.13*/bin/python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13 /root/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13))
BQ_VENV := .venv-bq
BQ_STAMP := $(BQ_VENV)/.installed-0.3.2
DUCKDB := 1.5.5

.PHONY: install emulators-install emulators try-vertex lint typecheck browser test soak bench demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv --without-pip $(DEMO_VENV)  # this Python's pip installs into it: seconds saved
	$(PYTHON) -m pip --python $(DEMO_VENV)/bin/python install --quiet --disable-pip-version-check -e .
	rm -f $(DEMO_VENV)/.installed-* && touch $(DEMO_STAMP)

# local-bigquery needs Python >= 3.13 and, offline, duckdb 1.5.5 with its extension wheels.
$(BQ_STAMP):
	@test -n "$(PY313)" || { echo "Python 3.13 is needed for the BigQuery emulator (set PY313=...)"; exit 1; }
	$(PY313) -m venv $(BQ_VENV)
	$(BQ_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BQ_VENV)/bin/python -m pip install --quiet local-bigquery==0.3.2 duckdb==$(DUCKDB) \
	    duckdb-extensions==$(DUCKDB) duckdb-extension-icu==$(DUCKDB) duckdb-extension-ducklake==$(DUCKDB) \
	    duckdb-extension-spatial==$(DUCKDB) duckdb-extension-httpfs==$(DUCKDB)
	mkdir -p $(BQ_VENV)/home && HOME=$(abspath $(BQ_VENV))/home $(BQ_VENV)/bin/python -c \
	    "from duckdb_extensions import import_extension as i; [i(x) for x in ('icu', 'ducklake', 'spatial', 'httpfs')]"
	touch $@

emulators-install: $(STAMP) $(BQ_STAMP)

emulators: emulators-install
	$(BIN)/python -m runner.devtools.emulators

# The Google Cloud examples (configs/vertex) on the emulators in one command: makes the buckets,
# datasets and tables they name, seeds them, runs doctor and apply --wait, prints what it made.
# KEEP=1 keeps the emulators up afterwards to look around. Downloads nothing at run time.
try-vertex: emulators-install
	$(BIN)/python -m runner.devtools.tryvertex $(if $(KEEP),--keep)

lint: install
	$(BIN)/ruff check runner tests bench
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

# The report's browser tests need headless Chromium from Debian's packages: installed here when we
# may (root with apt-get), else those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the report's browser tests"; \
	    (apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	     (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1)) || \
	    echo "could not install chromium: the browser tests will be skipped"; \
	  else echo "chromium not found (apt-get install chromium): the browser tests will be skipped"; fi; }

# Three workers (pytest-xdist; the tests wait on servers as much as they compute), each with its
# own emulators; the slow mark's 100k-row proofs run in make soak.
# The two environments install side by side (pip waits on disk and index as much as it computes),
# then lint and typecheck; each step's output is printed whole, not interleaved.
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target lint typecheck emulators-install browser
	$(BIN)/pytest -q -n 3 --dist worksteal

# Throughput, memory and API calls against the targets of issue 7 (minutes; writes bench/results.json).
bench: install
	$(BIN)/python -m bench.bench

# The full crash and race trials, and the suite's slow proofs: the same rules at 100k rows
# (minutes; not part of make test).
soak: emulators-install browser
	$(BIN)/pytest -q -m slow
	$(BIN)/python -m tests.soak

demo: $(DEMO_STAMP)
	rm -rf configs/.batchrun configs/out
	$(DEMO) validate
	$(DEMO) render ticket-triage --limit 2
	$(DEMO) plan
	$(DEMO) apply --auto-approve --wait --poll-interval 0.5
	$(DEMO) status
	$(DEMO) results ticket-triage
	$(DEMO) plan

clean:
	rm -rf $(VENV) $(DEMO_VENV) $(BQ_VENV) configs/.batchrun configs/out .pytest_cache .mypy_cache .ruff_cache
