# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit clean bench bench-full soak lock

# The test and bench extras install at the versions in requirements-dev.lock (what passed
# here), so a fresh machine later gets the same; `make lock` moves both locks forward.
DEV_LOCK := requirements-dev.lock

$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(DEV_LOCK) -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## run: an embedded S3 store seeded with a sample model, the webhook and the agent under ./var/
run: $(STAMP)
	$(BIN)/python -m devstack

## test: lint, type check, the whole suite
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check modelsync webhook agent gateway devstack tests bench
	$(BIN)/ruff format --check modelsync webhook agent gateway devstack tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# Two processes: most tests wait on real servers and processes, so two workers halve the time
# on two cores (510 s -> 270 s). A module's tests stay in one worker (--dist loadfile).
# PYTEST_WORKERS=0 runs them in this process, one after the other.
PYTEST_WORKERS ?= 2
unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

## bench: every benchmark at a quick size (about 15 minutes); bench-full: the sizes BENCHMARKS.md reports
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c $(DEV_LOCK) -e '.[test,bench]'
	touch $(BENCH_STAMP)

# The load generator is a Debian package, not a wheel: stop at once with the command that fixes it.
WRK_CHECK := @command -v wrk >/dev/null || { echo "make bench needs wrk: apt-get install -y wrk (Debian, Ubuntu) or brew install wrk (macOS)" >&2; exit 2; }

bench: $(BENCH_STAMP)
	$(WRK_CHECK)
	$(BIN)/python -m bench.run_all --quick

bench-full: $(BENCH_STAMP)
	$(WRK_CHECK)
	$(BIN)/python -m bench.run_all

## soak: the long fault-injection runs (kill -9 rounds, webhook kills, fuzzing)
soak: $(STAMP)
	$(BIN)/python -m bench.soak

## lock: resolve requirements.lock (the images), requirements-agent.lock (the agent image, with openvino)
## and requirements-dev.lock (make's venv) again
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --universal --generate-hashes \
		-o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra preflight --python-version 3.11 --universal \
		--generate-hashes -o requirements-agent.lock
	$(BIN)/uv pip compile pyproject.toml --extra test --extra bench --python-version 3.11 --universal \
		-o $(DEV_LOCK)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
