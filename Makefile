# make demo: install, then run the whole loop on the local examples. make test: ruff, mypy, pytest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DEMO := cd configs && ../$(BIN)/batchrun

.PHONY: install lint typecheck test demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check runner tests

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

demo: install
	rm -rf configs/.batchrun configs/out
	$(DEMO) validate
	$(DEMO) render ticket-triage --limit 2
	$(DEMO) plan
	$(DEMO) apply --auto-approve --wait --poll-interval 0.5
	$(DEMO) status
	$(DEMO) results ticket-triage
	$(DEMO) plan

clean:
	rm -rf $(VENV) configs/.batchrun configs/out .pytest_cache .mypy_cache .ruff_cache
