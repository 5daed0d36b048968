# Two entry points for a fresh machine (python3 + make): `make demo` and `make test`.
# Each (re)creates .venv when pyproject.toml changed, so nothing else needs to be installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test system-deps lint typecheck unit bench bench-ingest bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/linli demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hub adapters rules dashboards simulators tests bench
	$(BIN)/ruff format --check hub adapters rules dashboards simulators tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Real servers for the tests (Mosquitto, Chromium, a CJK font) from Debian's packages.
system-deps:
	scripts/system-deps

test: system-deps lint typecheck unit

# The benchmark suite of issue 14 (docs/benchmarks.md): one JSON line on stdout, a table on stderr.
# Needs Mosquitto, influxd, node + npm (Node-RED is installed into ~/.cache/linli-bench on first use).
bench: $(STAMP)
	$(BIN)/python -m bench.suite $(ARGS)

# Only the ingest bench (client ceiling vs hub), as before the suite.
bench-ingest: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

# A quick pass over every section with small N (minutes, not the numbers to quote).
bench-quick: $(STAMP)
	$(BIN)/python -m bench.suite --messages 20000 --latency-seconds 4 --scale-devices 5000 $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
