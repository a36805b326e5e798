# Two commands set everything up on a fresh machine:  make book  |  make test
# Both create .venv (Python 3.10+), install requirements.txt and sharedlib, then build or test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install book test notebooks clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)  ## build the HTML book from the committed notebook outputs into _build/html
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)  ## unit tests, nbval on every notebook, papermill smoke runs, strict book build
	$(BIN)/python -m pytest

notebooks: $(STAMP)  ## re-execute every notebook (CI profile) and rewrite the committed outputs
	$(BIN)/python scripts/run_notebooks.py

clean:
	rm -rf _build
