# The two commands of the README. Each makes .venv (Python 3.11+) when missing and reuses it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

COLIN27 := /usr/share/mricron/templates/ch2better.nii.gz

.PHONY: workbook test venv devset
workbook: $(STAMP)   ## the main job: the whole workbook on the embedded dataset (demo preset, AD and NC)
	$(BIN)/brainlib run --preset demo --classes AD NC --name demo

test: $(STAMP)       ## ruff, then the test suite (installs Debian's chromium and mricron-data for their tests when it can)
	@bash tests/apt_setup.sh chromium /usr/bin/chromium "the browser tests"
	@bash tests/apt_setup.sh mricron-data $(COLIN27) "the Colin27 development set"
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

devset: $(STAMP)     ## the second development set, real MRI texture: data/colin27 (installs mricron-data when missing)
	@bash tests/apt_setup.sh mricron-data $(COLIN27) "the Colin27 development set"
	$(BIN)/brainlib data colin27 --out data/colin27 --n 2000

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version' 
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)
