# One command each. Every target creates .venv (Python 3 + pip only) and installs the package if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-medtune
PROFILE ?= tiny
RUN_DIR ?= results/$(PROFILE)

.PHONY: setup reproduce test lint lab figures clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install medtune_utils with the dev tools

reproduce: $(STAMP)  ## run notebooks 01-04 headless (tiny profile on data/sample by default)
	$(BIN)/python -m medtune_utils.pipeline --profile $(PROFILE) --run-dir $(RUN_DIR) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: $(STAMP)  ## the test suite (tests that need ../shared/data skip without it)
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check medtune_utils tests benchmarks

lab: $(STAMP)  ## JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

figures: $(STAMP)  ## regenerate figures/ from real run folders: make figures RUNS="results/a results/b"
	$(BIN)/python -m medtune_utils.reporting --out figures $(RUNS)

clean:  ## remove the tiny run folder (never touches other runs)
	rm -rf results/tiny
