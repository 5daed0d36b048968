"""The YAML rule-test runner, and the shipped rule tests (every shipped rule must be tested)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.loader import BUILTIN_PACKS, load_packs
from rules.testing import parse_time, run_rule_tests, summary

SHIPPED_TESTS = BUILTIN_PACKS.parent / "tests"


def test_shipped_rule_tests_pass() -> None:
    results = run_rule_tests([SHIPPED_TESTS])
    assert results, "no shipped rule tests found"
    failed = [r.diff for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert summary(results)["failed"] == 0


def test_every_shipped_rule_has_a_test_expecting_its_signals() -> None:
    covered: set[str] = set()
    for result in run_rule_tests([SHIPPED_TESTS]):
        covered |= result.rules
    missing = {r.id for r in load_packs()} - covered
    assert not missing, f"shipped rules without a rule test: {sorted(missing)}"


def write(tmp_path: Path, body: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


FAILING = """
subjects:
  lane: {kind: parking_sensor, grid: "110105001001001", community: "110105001001", attributes: {place.kind: fire_lane}}
rules: [parking.fire_lane_occupied]
tests:
  - name: wrong expectations
    steps:
      - at: +0s
        events: [{device: lane, kind: occupancy, value: true}]
        expect: [{action: raise, rule: parking.fire_lane_occupied, subject: lane}]
      - at: +1m
        expect: [{action: raise, rule: parking.fire_lane_occupied, subject: lane, at: +2m}]
      - at: +2m
  - name: right
    steps:
      - at: +0s
        events: [{device: lane, kind: occupancy, value: true}]
      - at: +1m
        expect: [{action: raise, rule: parking.fire_lane_occupied, subject: lane, at: +1m}]
"""


def test_failures_have_a_readable_diff(tmp_path: Path) -> None:
    path = write(tmp_path, FAILING)
    wrong, right = run_rule_tests([tmp_path])
    assert right.passed and right.diff == ""
    assert not wrong.passed and [f.step for f in wrong.failures] == [1, 2]
    assert wrong.diff == (
        f"FAIL {path} :: wrong expectations\n"
        "  step 1 at +0s:\n"
        "    - raise parking.fire_lane_occupied lane\n"
        "  step 2 at +1m:\n"
        "    - raise parking.fire_lane_occupied lane at +2m\n"
        "    + raise parking.fire_lane_occupied lane at +1m"
    )


def test_bad_files_become_failed_results(tmp_path: Path) -> None:
    write(tmp_path, "tests: []\n", "a.yaml")
    write(tmp_path, "tests: [{name: x, steps: [{at: soon}]}]\n", "b.yaml")
    write(tmp_path, "packs: [nowhere.yaml]\ntests: [{name: x, steps: [{at: +0s}]}]\n", "c.yaml")
    write(tmp_path, "zone: Mars/Olympus\ntests: [{name: x, steps: [{at: +0s}]}]\n", "d.yaml")
    write(tmp_path, "tests: [{name: x, steps: [{at: +0s, events: [{device: d, kind: nope}]}]}]\n", "e.yaml")
    results = run_rule_tests([tmp_path])
    assert [Path(r.file).name for r in results] == ["a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml"]
    assert all(not r.passed and r.error for r in results)
    assert "+<duration>" in results[1].error
    assert "cannot read" in results[2].error
    assert "time zone" in results[3].error
    assert "kind" in results[4].error


def test_packs_relative_to_the_test_file_and_absolute_times(tmp_path: Path) -> None:
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "p.yaml").write_text(
        "pack: p\nrules:\n  - {id: p.night, title: {zh: 夜}, category: care, severity: info,"
        " active: [{from: '22:00', to: '06:00'}], trigger: {type: event, kinds: [door_open]}}\n"
    )
    write(
        tmp_path,
        """
packs: [packs]
zone: Europe/Berlin
start: 2026-10-24T20:00:00+02:00
tests:
  - name: night only
    steps:
      - at: +1h
        events: [{device: d, kind: door_open}]
      - at: 2026-10-24T22:00:00+02:00
        events: [{device: d, kind: door_open}]
        expect: [{action: raise, rule: p.night, subject: d, at: "2026-10-24T22:00:00"}]
""",
    )
    (result,) = run_rule_tests([tmp_path / "t.yaml"])
    assert result.passed, result.diff


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+90s", 1090.0),
        ("+1h30m", 1000.0 + 5400),
        ("1970-01-01T00:00:00Z", 0.0),
        ("1970-01-01T08:00:00", 0.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, 1000.0, "Asia/Shanghai") == expected
