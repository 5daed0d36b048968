# Two entry points for a fresh machine (python3 + make): `make demo` and `make test`.
# Each (re)creates .venv when pyproject.toml changed, so nothing else needs to be installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test system-deps lint typecheck unit bench faults clean

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

# The fault suite's long variants (minutes): real hub, real Mosquitto, InfluxDB, a tmpfs; the
# table of counts goes to docs/reliability.md. The short variants run in `make test`.
FAULTS_OUT := .faults-report.jsonl
faults: $(STAMP)
	rm -f $(FAULTS_OUT)
	FAULTS_LONG=1 FAULTS_REPORT=$(abspath $(FAULTS_OUT)) $(BIN)/pytest -q tests/faults $(PYTEST_ARGS)
	$(BIN)/python -m tests.faults.report $(FAULTS_OUT) docs/reliability.md make faults

bench: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
