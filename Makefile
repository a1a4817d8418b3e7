# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

install: $(STAMP)

# torch first: the pinned CPU build is on this machine's disk; the package's own range accepts it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,text,report,serve]"
	touch $(STAMP)

demo: install
	$(BIN)/foundrec demo

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) runs .pytest_cache
