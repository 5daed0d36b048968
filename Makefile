# Two entry points for a fresh machine (python3 + make): `make demo` and `make test`.
# Each (re)creates .venv when pyproject.toml or the lockfile changed, so nothing else needs to be
# installed by hand. Every third-party package comes from requirements-dev.lock, pinned with hashes:
# a new transitive dependency (such as one that replaces another's module) cannot arrive unseen.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make lock` refreshes the lockfiles after pyproject.toml changed, keeping every other pin;
# `make lock LOCK_ARGS=--upgrade` moves everything to the newest releases, and
# `make lock LOCK_ARGS="--upgrade-package chinese-calendar"` takes a new holiday notice.
LOCK_VENV := .venv-lock
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
LOCK_ARGS ?=

.PHONY: demo test system-deps lint typecheck unit unit-compiled wheel-compiled bench bench-compiled bench-instructions bench-ingest bench-quick faults clean lock

$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

lock:
	test -x $(LOCK_VENV)/bin/pip-compile || ($(PY) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q pip-tools)
	$(LOCK_VENV)/bin/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) --output-file requirements.lock pyproject.toml
	$(LOCK_VENV)/bin/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) --extra dev --output-file requirements-dev.lock pyproject.toml

demo: $(STAMP)
	$(BIN)/linli demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check hub adapters rules dashboards simulators tests bench setup.py
	$(BIN)/ruff format --check hub adapters rules dashboards simulators tests bench setup.py

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Real servers for the tests (Mosquitto, Chromium, a CJK font) from Debian's packages.
system-deps:
	scripts/system-deps

# The hot path compiled with mypyc (hub/ingest/hot_path.py), as `make wheel-compiled` and
# deploy/Dockerfile ship it: its tests again on that build. bench/compiled.py builds the wheel
# from a copy of the checkout (≈ 1 min; cached by the sources' hash) and unpacks it; the tests
# then import Linli from there (tests/conftest.py), and test_hot_path.py fails unless every
# module of the hot path runs compiled.
COMPILED_TESTS ?= tests/test_hot_path.py tests/test_adapters_*.py tests/test_zigbee2mqtt.py \
	tests/test_line_protocol_encode.py tests/test_rules*.py tests/test_pipeline_*.py \
	tests/test_device_state_ring.py tests/test_registry*.py tests/test_registered_ids.py \
	tests/test_unknown_devices.py tests/test_priority_lane.py tests/test_redelivery_idempotent.py \
	tests/test_rule_clock.py tests/test_hub_rules.py tests/test_hub_timeseries.py \
	tests/test_timeseries_*.py tests/test_ingest_retry.py tests/test_sos_trace.py tests/test_e2e.py \
	tests/test_shared_ids.py tests/test_community_sources.py tests/test_signs_of_life.py
unit-compiled: $(STAMP)
	tree="$$($(BIN)/python -m bench.compiled)" && LINLI_DEV_COMPILED_TREE="$$tree" PYTHONPATH="$$tree" \
		LINLI_DEV_EXPECT_COMPILED=1 $(BIN)/pytest -q -p no:cacheprovider $(COMPILED_TESTS) $(PYTEST_ARGS)

# The wheel with the hot path compiled (setup.py, LINLI_BUILD_MYPYC=1) into dist/: what deploy/Dockerfile
# installs. Needs a C compiler and Python's headers; a plain `pip install .` stays pure Python.
wheel-compiled: $(STAMP)
	LINLI_BUILD_MYPYC=1 $(BIN)/python -m pip wheel --no-deps --no-build-isolation -q -w dist .

test: system-deps lint typecheck unit unit-compiled

# The fault suite's long variants (minutes each, hence their own per-test timeout): real hub,
# real Mosquitto, InfluxDB, a tmpfs; the table of counts goes to docs/reliability.md. The short
# variants run in `make test`.
FAULTS_OUT := .faults-report.jsonl
faults: $(STAMP)
	rm -f $(FAULTS_OUT)
	FAULTS_LONG=1 FAULTS_REPORT=$(abspath $(FAULTS_OUT)) $(BIN)/pytest -q -o timeout=1800 tests/faults $(PYTEST_ARGS)
	$(BIN)/python -m tests.faults.report $(FAULTS_OUT) docs/reliability.md make faults

# The benchmark suite of issue 14 (docs/benchmarks.md): one JSON line on stdout, a table on stderr.
# Needs Mosquitto, influxd, PostgreSQL, node + npm (Node-RED is installed into ~/.cache/linli-bench on first use).
bench: $(STAMP)
	@$(BIN)/python -m bench.suite --compiled $(ARGS)

# The whole suite with every hub on the compiled wheel (what deploy/Dockerfile ships).
bench-compiled: $(STAMP)
	@$(BIN)/python -m bench.suite --build compiled $(ARGS)

# Instructions per message in Pipeline.handle under callgrind (repeatable on a noisy machine);
# e.g. make bench-instructions ARGS="--against HEAD~3".
bench-instructions: $(STAMP)
	$(BIN)/python -m bench.instructions $(ARGS)

# Only the ingest bench (client ceiling vs hub), as before the suite.
bench-ingest: $(STAMP)
	$(BIN)/python -m bench.run $(ARGS)

# A quick pass over every section with small N (minutes, not the numbers to quote).
bench-quick: $(STAMP)
	$(BIN)/python -m bench.suite --messages 20000 --latency-seconds 4 --scale-devices 5000 $(ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .mypy_cache .pytest_cache .ruff_cache
