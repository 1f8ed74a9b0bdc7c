# Two commands for a newcomer: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install browser postgres demo test lint bench audit clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/leadscore demo

# The page tests drive a real headless Chromium (Debian's `chromium`): installed when missing and
# possible (root with apt-get); otherwise those tests skip and say why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: no Chromium; the browser tests will be skipped"

# The prediction store tests also run on a real PostgreSQL server (Debian's `postgresql`; each
# test run starts its own throwaway cluster): installed when missing and possible (root with
# apt-get); otherwise those tests skip and say why.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "note: no PostgreSQL server; the PostgreSQL store tests will be skipped"

test: $(STAMP) browser postgres
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_features
	$(BIN)/python -m benchmarks.bench_simulator
	$(BIN)/python -m benchmarks.bench_serving
	$(BIN)/python -m benchmarks.bench_soak

# The pinned set against an advisory database; fails, saying so, when none could be reached.
audit: $(STAMP)
	$(BIN)/python -m pipelines.audit --requirements constraints.txt

clean:
	rm -rf $(VENV) outputs .pytest_cache .mypy_cache .ruff_cache
