# pacsflow: `make demo` runs the main job on embedded defaults, `make test` passes the tests.
# Both set everything up first (idempotent): Debian packages when root, a venv in .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pacsflow-setup
PYTEST_ARGS ?=
DEMO_ARGS ?=

export TCP_NODELAY := 1

.PHONY: setup demo test test-fast fuzz lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml deployments/setup/system-packages.sh
	./deployments/setup/system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/pacsflow demo $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The fuzz harnesses (tests/faults/test_fuzz_*.py) run a few seconds each in `make test`;
# here each runs FUZZ_EXAMPLES examples (default 5000), with new random inputs every run.
fuzz: setup
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-5000} $(BIN)/python -m pytest -p no:cacheprovider -q tests/faults/test_fuzz_*.py $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.end_to_end

clean:
	rm -rf var/demo .pytest_cache
