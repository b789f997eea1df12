# kdforge: the two README commands are `make demo` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# A CPU build of torch lies on the reference machines; install it first so nothing pulls CUDA.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test setup data data-text data-audio audio-teacher lint bench clean help

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

# Audio (EAsT/EC on spoken words): Debian synthesisers + real recordings, and the GE2E teacher's weights.
AUDIO_APT := espeak-ng flite sox asterisk-core-sounds-en-wav
KDFORGE_CACHE ?= $(HOME)/.cache/kdforge

data-audio: audio-teacher  ## espeak-ng, flite, sox, Asterisk recordings (apt) + the GE2E teacher weights
	@if ! command -v apt-get >/dev/null; then \
	  echo "apt-get is not available: install $(AUDIO_APT) with your package manager to generate the"; \
	  echo "spoken-words data (the teacher weights above are installed)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $(AUDIO_APT); \
	elif command -v sudo >/dev/null; then sudo apt-get update -q && sudo apt-get install -y -q $(AUDIO_APT); \
	else echo "not root and no sudo: ask an administrator to apt-get install $(AUDIO_APT)"; fi

audio-teacher: setup  ## the GE2E speaker encoder's weights: pip-download the Resemblyzer 0.1.4 wheel (no deps)
	$(PIP) download -q --no-deps Resemblyzer==0.1.4 -d "$(KDFORGE_CACHE)/wheels"
	KDFORGE_CACHE="$(KDFORGE_CACHE)" $(PY) -c \
	  "from kdforge.models.audio_teachers import resemblyzer_weights as w; print('GE2E weights:', w())"

demo: setup data  ## set up, then `kdforge quickstart`: KD with 500 labels + 20,000 unlabelled Fashion-MNIST images
	$(VENV)/bin/kdforge quickstart

test: setup  ## set up, then run the test suite (fast; no slow marker)
	-@bash scripts/install_data.sh --quiet
	-@$(MAKE) --no-print-directory audio-teacher >/dev/null
	-@command -v espeak-ng >/dev/null || $(MAKE) --no-print-directory data-audio >/dev/null 2>&1
	$(PY) -m pytest -q

lint:  ## ruff check + format check
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: setup data  ## engine overhead benchmark (writes benchmarks/results/)
	$(PY) benchmarks/engine_overhead.py

clean:  ## remove runs and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
