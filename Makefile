# The two commands of the README. Each makes .venv (Python 3.11+) when missing and reuses it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: workbook test venv
workbook: $(STAMP)   ## the main job: the whole workbook on the embedded dataset (demo preset, AD and NC)
	$(BIN)/brainlib run --preset demo --classes AD NC --name demo

test: $(STAMP)       ## the test suite (installs Debian's chromium for the browser tests when it can)
	@bash tests/browser_setup.sh
	$(BIN)/python -m pytest -q

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version' 
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)
