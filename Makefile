# Two entry points, both self-contained on a fresh machine:
#   make test        ruff + the whole pytest suite (what CI runs)
#   make reproduce   CPU-scale reproductions of every paper, then the notebooks
#                    (one paper: make reproduce PAPER=group_norm). On a machine other than the one
#                    that made the committed results, results go to runs/reproduce/<machine-id>/;
#                    UPDATE_COMMITTED=1 replaces the committed results, notebooks and README instead.
SHELL := /bin/bash
# The project needs Python 3.11 (torch 2.14.1 wheels, pins): python3.11 if it is on PATH, else python3;
# override with `make PYTHON=/path/to/python3.11 test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp is re-made whenever pyproject.toml changes, so new pins get installed.
STAMP := $(VENV)/.installed

PAPER ?= all
UPDATE_COMMITTED ?=
# Fashion-MNIST: by default the Debian package's folder (installed by `make reproduce` when missing, as root);
# DATA=/path/to/folder reads the four IDX files from there instead.
DATA ?=

.PHONY: test reproduce lint notebooks venv benchmark clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "error: $(PYTHON) is Python %d.%d; this project needs Python 3.11. Run make PYTHON=/path/to/python3.11 (or conda env create -f environment.yml)" % sys.version_info[:2])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[repro,mmcv,dev]"
	@# reproductions/ is not part of the wheel; the checkout itself goes on the venv's path.
	$(PY) -c 'import pathlib, site; pathlib.Path(site.getsitepackages()[0], "normcore_checkout.pth").write_text("$(CURDIR)\n")'
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check normcore reproductions tests benchmarks

test: $(STAMP) lint
	$(VENV)/bin/pytest

reproduce: $(STAMP)
	$(PY) -m reproductions.run_all --paper $(PAPER)$(if $(DATA), --data $(DATA))$(if $(UPDATE_COMMITTED), --update-committed)

notebooks: $(STAMP)
	$(PY) -m reproductions.run_all --paper $(PAPER) --notebooks-only

benchmark: $(STAMP)
	$(PY) benchmarks/layers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
