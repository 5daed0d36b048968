"""Every shipped scenario, played end to end against an embedded broker and hub on a test clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import main
from hub.cli.simulate import run_embedded_scenario
from simulators.scenario import shipped_scenarios


@pytest.mark.parametrize("path", shipped_scenarios(), ids=lambda p: p.stem)
async def test_shipped_scenario_passes_against_the_real_hub(path: Path, tmp_path: Path) -> None:
    result = await run_embedded_scenario(path, work_dir=tmp_path)
    assert result.passed, result.diff


def test_a_wrong_expectation_fails_with_a_readable_diff(tmp_path: Path) -> None:
    original = next(p for p in shipped_scenarios() if p.stem == "fire_lane_occupied").read_text(
        encoding="utf-8"
    )
    wrong = original.replace(
        "{rule: parking.fire_lane_occupied, subject: lane, at", "{rule: parking.overstay, subject: lane, at"
    )
    assert wrong != original
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text(wrong, encoding="utf-8")
    result = CliRunner().invoke(main, ["simulate", "scenario", "--expect", str(scenario)])
    assert result.exit_code == 1
    assert (
        "FAIL wrong.yaml" in result.output
        and "expected:" in result.output
        and "parking.overstay" in result.output
    )
