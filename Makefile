# qrepeater: `make demo` reproduces the paper on the default preset; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= reproduction

.PHONY: install install-test demo test test-fast lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

demo: install
	MPLBACKEND=Agg $(BIN)/qrepeater reproduce --out $(OUT)

test: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

test-fast: install-test
	MPLBACKEND=Agg $(BIN)/python -m pytest -q -m "not slow"

lint: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: install-test
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache
