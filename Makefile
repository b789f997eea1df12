# kdforge: the two README commands are `make demo` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# A CPU build of torch lies on the reference machines; install it first so nothing pulls CUDA.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test setup data data-text lint bench clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,nlp,parquet,datasets]"
	touch $@

setup: $(VENV)/.installed  ## create .venv and install kdforge with test and NLP extras

data:  ## install the default data (Fashion-MNIST, Debian package dataset-fashion-mnist)
	@bash scripts/install_data.sh

data-text: setup  ## one-time download of the VADER sentiment sets (PyPI sdist) for the NLP recipes
	$(VENV)/bin/kdforge embed download-vader

demo: setup data  ## set up, then `kdforge quickstart`: KD with 500 labels + 20,000 unlabelled Fashion-MNIST images
	$(VENV)/bin/kdforge quickstart

test: setup  ## set up, then run the test suite (fast; no slow marker)
	-@bash scripts/install_data.sh --quiet
	$(PY) -m pytest -q

lint:  ## ruff check + format check
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: setup data  ## engine overhead benchmark (writes benchmarks/results/)
	$(PY) benchmarks/engine_overhead.py

clean:  ## remove runs and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
