# One command each. Every target creates .venv (Python 3 + pip only) and installs the package if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-medtune
PROFILE ?= tiny
RUN_DIR ?= results/$(PROFILE)
LAB_PORT ?= 8888
LAB_ARGS ?=
# Jupyter refuses to start as root (containers) unless told to.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup reproduce test test-fast lint lab figures clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install medtune_utils with the dev tools

reproduce: $(STAMP)  ## run notebooks 01-04 headless (tiny profile on data/sample by default)
	$(BIN)/python -m medtune_utils.pipeline --profile $(PROFILE) --run-dir $(RUN_DIR) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: $(STAMP)  ## the whole test suite, slow tier included (tests that need ../shared/data skip without it)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## the quick tier, under a minute: skips the tests marked slow (pipeline runs, launches, long trainings, full corpora, fuzzing)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check medtune_utils tests benchmarks

lab: $(STAMP)  ## JupyterLab on the notebooks, port LAB_PORT; extra flags in LAB_ARGS, e.g. LAB_ARGS=--no-browser when headless
	$(BIN)/jupyter lab notebooks/ --port=$(LAB_PORT) $(ALLOW_ROOT) $(LAB_ARGS)

figures: $(STAMP)  ## regenerate figures/ from real run folders: make figures RUNS="results/a results/b"
	$(BIN)/python -m medtune_utils.report --out figures $(RUNS)

clean:  ## remove the tiny run folder (never touches other runs)
	rm -rf results/tiny
