# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps axe run test check lint typecheck bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

# The accessibility tests inject axe-core (npm, pinned) into each page; it lives beside the venv.
AXE_VERSION := 4.14.1
AXE_STAMP   := $(VENV)/.axe-core-$(AXE_VERSION)

$(AXE_STAMP): | $(BIN)/python
	@command -v npm >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq npm >/dev/null; } || true
	@npm install --prefix $(VENV) --no-save --no-package-lock --no-audit --no-fund --silent \
		axe-core@$(AXE_VERSION) && touch $(AXE_STAMP) || \
		echo "warning: could not install axe-core: the accessibility tests are skipped (failed under CI)"

axe: $(AXE_STAMP)

# Browser tests drive Debian's Chromium (never a downloaded build); the live CLI view runs in tmux.
# bench/sse.py drives its HTTP append ceiling with wrk (without it, with a slower Python client).
system-deps:
	@{ command -v chromium && command -v tmux; } >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq chromium tmux >/dev/null; } || \
		echo "warning: could not install chromium/tmux: their tests are skipped (failed under CI)"
	@command -v wrk >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || \
		echo "warning: could not install wrk: bench/sse.py's http/bare uses its Python client"

run: install
	$(BIN)/runtrack serve --demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

check: lint typecheck

# Two pytest processes, one test file at a time each: most of the suite's time is spent
# waiting on the servers, workers and browsers it starts (docs/benchmarks.md, the suite's time).
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2

test: check system-deps axe
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
