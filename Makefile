# Two commands set everything up on a fresh machine:  make book  |  make test
# Both create .venv (Python 3.11), install requirements.lock (every package of the book's environment at an
# exact version, with hashes) and sharedlib, then build or test. requirements.txt is the human-edited list of
# direct needs; `make lock` resolves it into requirements.lock (see the README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
PIP := pip==26.3
PIP_TOOLS := pip-tools==7.6.2

.PHONY: install browser book test test-perturbed notebooks screenshots clean lock test-oldest linkcheck lab translations test-colab

$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "$(LOCK) is for Python 3.11: PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)  ## build the HTML book (English in _build/html, Chinese in _build/html/zh) from the committed notebooks
	$(BIN)/jupyter-book build . -W -n --keep-going
	$(BIN)/python scripts/translations.py build

translations: $(STAMP)  ## after changing English prose: refresh locale/zh_CN/LC_MESSAGES/*.po, then report what needs translating
	$(BIN)/python scripts/translations.py update
	$(BIN)/python scripts/translations.py status

linkcheck: $(STAMP)  ## every external link of the book (needs the network): report in _build/html/output.txt
	$(BIN)/jupyter-book build . --builder linkcheck

# The portability pass: nbval on every notebook again under another CPU arithmetic path, as another x86 machine
# computes: ATen without its SIMD kernels, oneDNN limited to SSE4.1, MKL's AVX2 code path. Each of the three
# changes the bits (tests/test_portability.py shows that they do). Outputs are compared at their precision
# (scripts/output_precision.py). Two single-threaded processes share the two cores (ONE_THREAD: two processes of
# two OpenMP threads each on two cores spin-wait, measured 4x slower): one runs the unit tests, the other the
# portability pass and then the usual nbval pass on every notebook, so that both take about as long.
PERTURBED := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=AVX2
PERTURBED_LOG := _build/portability-pass.log
NOTEBOOKS_LOG := _build/notebooks-pass.log
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

test: $(STAMP) browser  ## unit tests, nbval on every notebook (twice: usual and perturbed arithmetic), papermill smoke runs, strict book build, site checks
	@mkdir -p _build && rm -f _build/perturbed.rc _build/notebooks.rc
	@$(BIN)/python -c "import matplotlib.font_manager"  # matplotlib's font cache, built once before the two passes
	@( $(ONE_THREAD) $(PERTURBED) $(BIN)/python -m pytest notebooks > $(PERTURBED_LOG) 2>&1; echo $$? > _build/perturbed.rc; \
	  $(ONE_THREAD) $(BIN)/python -m pytest notebooks > $(NOTEBOOKS_LOG) 2>&1; echo $$? > _build/notebooks.rc ) & second=$$!; \
	$(ONE_THREAD) $(BIN)/python -m pytest tests --durations=25; usual=$$?; \
	wait $$second; perturbed=$$(cat _build/perturbed.rc); notebooks=$$(cat _build/notebooks.rc); \
	echo "== nbval on every notebook (log: $(NOTEBOOKS_LOG)) =="; tail -n 30 $(NOTEBOOKS_LOG); \
	echo "== portability pass, $(PERTURBED) (log: $(PERTURBED_LOG)) =="; tail -n 30 $(PERTURBED_LOG); \
	[ $$usual -eq 0 ] && [ $$perturbed -eq 0 ] && [ $$notebooks -eq 0 ]

test-perturbed: $(STAMP)  ## only the portability pass: nbval on every notebook under the perturbed arithmetic path
	$(PERTURBED) $(BIN)/python -m pytest notebooks

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:  ## Debian's Chromium and a CJK font for the rendered-site tests, installed if missing (or set CHROMIUM=/path/to/chrome)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "$$CHROMIUM" ] || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@fc-list :lang=zh 2>/dev/null | grep -q . || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fonts-wqy-microhei >/dev/null; } || \
	  echo "no CJK font installed: the Chinese pages' screenshots will show boxes (the tests do not depend on it)"

screenshots: book  ## PNGs of the landing page and one chapter in out/screenshots, to review a change in look
	$(BIN)/python scripts/site_browser.py --html _build/html --output-dir out/screenshots

lab: $(STAMP)  ## read and run the chapters locally in JupyterLab (the locked environment, CPU torch)
	$(BIN)/jupyter lab notebooks/

notebooks: $(STAMP)  ## re-execute every notebook (CI profile) and rewrite the committed outputs
	$(BIN)/python scripts/run_notebooks.py

# pip-compile (pip-tools) in its own throwaway venv. It keeps the pins of what requirements.txt did not change;
# `make lock ARGS=--upgrade` moves everything to the newest releases that fit. torch must resolve to its CPU
# build: pip finds it on this project's machines; elsewhere set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
lock:  ## re-resolve requirements.txt into requirements.lock: every transitive package, exact versions, hashes
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet $(PIP) $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	  --strip-extras --no-emit-index-url --no-emit-find-links $(ARGS) --output-file $(LOCK) requirements.txt

# sharedlib's unit tests that need nothing but sharedlib's own dependencies, pytest and hypothesis (not
# test_albert_sizes: it asks transformers for Hugging Face's counts). tests/test_publishing.py checks that no file
# listed imports anything else; add a new test file here when it qualifies.
OLDEST := .venv-oldest
OLDEST_TESTS := $(addprefix tests/test_,$(addsuffix .py,background_and_relaxed checkers convert counting \
  data_and_train decoding diagrams distributed evidence experiments measure models plots \
  package_layout recorded report sharing suite train_safety universal validation))

test-oldest:  ## sharedlib against the oldest versions pyproject.toml claims (constraints/oldest.txt), in .venv-oldest
	rm -rf $(OLDEST)
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet $(PIP)
	$(OLDEST)/bin/python -m pip install --quiet -c constraints/oldest.txt -e . \
	  $$(grep -hoE '^(pytest|hypothesis|setuptools|wheel)==[^ ]+' requirements.txt $(LOCK))
	$(OLDEST)/bin/python -m pip check
	$(OLDEST)/bin/python -m pip freeze --exclude-editable
	$(OLDEST)/bin/python -m pytest -o addopts="-ra -p no:cacheprovider" -q $(OLDEST_TESTS)

# Every chapter alone in an empty folder, as Colab runs it: Python 3.13 and Colab's published package versions
# (constraints/colab.txt, from googlecolab/backend-info) in .venv-colab; each chapter's install cell installs sharedlib
# from this checkout and must not change any package Colab has. CHAPTERS picks some, e.g. CHAPTERS="06b_cost 01".
COLAB_PYTHON ?= python3.13

test-colab:  ## every chapter as on Colab: Python 3.13 and Colab's versions (constraints/colab.txt) in .venv-colab
	$(COLAB_PYTHON) scripts/colab_check.py $(CHAPTERS)

clean:
	rm -rf _build
