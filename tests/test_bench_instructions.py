"""Smoke run of ``bench.instructions`` with tiny N: the harness works and its count is repeatable.

Not a speed test: nothing is compared with a target. What makes the harness worth having on a
noisy machine is that the same code gives the same count, so two runs of this tree must agree
closely, and the count must cover the measured messages only (not start-up).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.instructions import InstructionsError, collected, measure
from tests.conftest import server_missing

REPO = Path(__file__).resolve().parent.parent


def test_callgrinds_summary_line_is_read() -> None:
    assert collected("==41== Events : Ir\n==41== Collected : 608067324\n==41== I refs: 608,067,324\n") == (
        608067324
    )
    with pytest.raises(InstructionsError):
        collected("valgrind: failed to start tool 'callgrind'")


def test_the_same_code_counts_the_same_and_only_the_measured_messages() -> None:
    if shutil.which("valgrind") is None:
        server_missing("valgrind is not installed (scripts/system-deps installs it)")
    # Two runs side by side (start-up under valgrind is most of each run's time).
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda _: measure(REPO, messages=60, warmup=300, seed=1), range(2))
    # Two, three events a Zigbee2MQTT report (the reading, battery, link quality).
    assert 2.0 <= first["events_per_msg"] <= 3.0
    count = first["instructions_per_msg"]
    assert abs(count - second["instructions_per_msg"]) <= 0.02 * count
    # Per message, not per run: start-up (imports, the community, the hub: billions of
    # instructions) is outside the count; a message is some hundreds of thousands.
    assert 20_000 <= count <= 2_000_000
