"""The working calendar's missing years are said loudly by ``linli doctor`` and at start-up."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from hub.cli import main
from hub.cli.service import calendar_finding
from hub.clock import ManualClock
from hub.config import load_settings
from hub.timeseries import Level

NOV_2026 = datetime(2026, 11, 30, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def policies(tmp_path: Path, calendar: str) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(f"version: 1\ncalendar: {calendar}\n", encoding="utf-8")
    return path


def test_finding_warns_for_the_missing_next_year(tmp_path: Path) -> None:
    file = policies(tmp_path, "{official: none, listed_years: [2026]}")
    settings = load_settings(environ={"LINLI_POLICIES_FILE": str(file)})
    finding = calendar_finding(settings, clock=ManualClock(start=NOV_2026))
    assert finding.level is Level.WARN
    assert "no official holidays" in finding.message and "2027" in finding.message


def test_finding_is_ok_when_both_years_are_listed(tmp_path: Path) -> None:
    file = policies(tmp_path, "{official: none, listed_years: [2026, 2027]}")
    settings = load_settings(environ={"LINLI_POLICIES_FILE": str(file)})
    assert calendar_finding(settings, clock=ManualClock(start=NOV_2026)).level is Level.OK


def test_broken_policies_are_an_error(tmp_path: Path) -> None:
    file = policies(tmp_path, "{official: lunar}")
    settings = load_settings(environ={"LINLI_POLICIES_FILE": str(file)})
    assert calendar_finding(settings, clock=ManualClock(start=NOV_2026)).level is Level.ERROR


def test_doctor_prints_the_calendar_warning(tmp_path: Path) -> None:
    file = policies(tmp_path, "{official: none, listed_years: [2026]}")
    result = CliRunner().invoke(
        main,
        ["doctor", "--mqtt", "mqtt://127.0.0.1:9"],
        env={
            "LINLI_DATA_DIR": str(tmp_path),
            "LINLI_POLICIES_FILE": str(file),
            # The scenario clock pins "this year": the test does not depend on today's date.
            "LINLI_TEST_CLOCK_START": str(NOV_2026),
        },
    )
    assert "[warn] working calendar: no official holidays or 调休 make-up days for 2027" in result.output
