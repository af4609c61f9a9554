# Two entry points, both self-contained on a fresh machine:
#   make test        ruff + the whole pytest suite (what CI runs)
#   make reproduce   CPU-scale reproductions of every paper, then the notebooks
#                    (one paper: make reproduce PAPER=group_norm)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp is re-made whenever pyproject.toml changes, so new pins get installed.
STAMP := $(VENV)/.installed

PAPER ?= all

.PHONY: test reproduce lint notebooks venv benchmark clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[repro,mmcv,dev]"
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check normcore reproductions tests benchmarks

test: $(STAMP) lint
	$(VENV)/bin/pytest

reproduce: $(STAMP)
	$(PY) -m reproductions.run_all --paper $(PAPER)

notebooks: $(STAMP)
	$(PY) -m reproductions.run_all --paper $(PAPER) --notebooks-only

benchmark: $(STAMP)
	$(PY) benchmarks/layers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
