# Two commands set everything up on a fresh machine:  make book  |  make test
# Both create .venv (Python 3.10+), install requirements.txt and sharedlib, then build or test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser book test notebooks screenshots clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)  ## build the HTML book from the committed notebook outputs into _build/html
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP) browser  ## unit tests, nbval on every notebook, papermill smoke runs, strict book build, site checks
	$(BIN)/python -m pytest

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:  ## Debian's Chromium for the rendered-site tests, installed if missing (or set CHROMIUM=/path/to/chrome)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "$$CHROMIUM" ] || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

screenshots: book  ## PNGs of the landing page and one chapter in out/screenshots, to review a change in look
	$(BIN)/python scripts/site_browser.py --html _build/html --output-dir out/screenshots

notebooks: $(STAMP)  ## re-execute every notebook (CI profile) and rewrite the committed outputs
	$(BIN)/python scripts/run_notebooks.py

clean:
	rm -rf _build
