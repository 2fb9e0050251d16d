# Fresh machine: `make demo` or `make test`; both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

# torch==2.13.0 first, so a CPU-only machine takes the CPU build and nothing pulls another torch.
# Then MediaPipe's hand networks into the cache (docs/mediapipe.md; nothing is downloaded when they are there).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	$(VENV)/bin/im2hands weights fetch-mediapipe
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/im2hands demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) demo_out .pytest_cache
