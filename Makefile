# The two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make demo PORT=7861` when another demo holds 7860
PORT ?= 7860

.PHONY: demo test interop bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demos all --port $(PORT)

test: $(STAMP)
	$(PY) -m pytest -q

# Optional: PyTorch + transformers, for the interop tests and benchmark ratios (CI installs these).
interop: $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,interop]'

bench: $(STAMP)
	$(PY) benchmarks/step_time.py

clean:
	rm -rf $(VENV) .pytest_cache
