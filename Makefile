# Set-up and the everyday commands.  `make demo` and `make test` create .venv with the pinned
# dependencies on first use, so both work on a fresh machine with only python3.11 installed.
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,text]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dglmm demo

test: $(STAMP)
	$(PY) -m ruff check dglmm tests recipes benchmarks notebooks
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

clean-venv:
	rm -rf $(VENV)
