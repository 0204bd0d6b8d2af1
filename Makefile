# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck demo bench screenshot clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check meshlite tests benchmarks examples

typecheck: install
	$(BIN)/mypy --strict meshlite

test: lint typecheck
	$(BIN)/pytest

demo: install
	$(BIN)/meshlite demo

bench: install
	$(BIN)/python benchmarks/overhead.py

# Regenerate the README's dashboard picture (tests never write tracked files).
screenshot: install
	MESHLITE_SCREENSHOT=docs/img/dashboard.png $(BIN)/pytest -q \
		tests/observability/test_dashboard_browser.py -k live_charts

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
