# The two commands of the README are `make demo` and `make test`; both install what they need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8

.PHONY: install demo test bench lint dev clean

install: $(VENV)/.installed

# Pinned install from the lock file, bytecode compiled (PYTHONDONTWRITEBYTECODE is set on some machines,
# and imports then run about 2.5x slower without it).
$(VENV)/.installed: requirements.lock pyproject.toml scripts/bootstrap-system.sh
	bash scripts/bootstrap-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --compile-bytecode requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode --no-deps -e .
	touch $@

## Every asset for every month through Dagster backfills; CREDIT_ASSETS_DATA_DIR=... for real data.
demo: install
	$(BIN)/python -m credit_assets.devtools.demo

## The whole test suite (starts its own PostgreSQL when none is reachable).
test: install
	$(BIN)/python -m pytest

## Performance benchmark (see README "Performance"); e.g. make bench BENCH_ARGS=--quick
bench: install
	$(BIN)/python bench/benchmark.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check credit_assets credit_assets_tests bench

## The Dagster UI on the demo's state (run `make demo` first).
dev: install
	DAGSTER_HOME=$(CURDIR)/.state/dagster $(BIN)/dagster dev -w workspace.yaml

clean:
	-$(BIN)/python -m credit_assets.devtools.local_postgres stop --state-dir .state/postgres
	rm -rf .state .env
