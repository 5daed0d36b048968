"""``linli profiles suggest`` / ``profiles test`` and the recursive ``rules test``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from adapters.profiles import load_profiles
from hub.cli import main
from tests.support.samples import SAMPLES

LDS01 = SAMPLES / "lorawan_decoded" / "dragino_lds01_door_closed.json"


def test_suggest_writes_a_loadable_profile_with_review_notes(tmp_path: Path) -> None:
    one = tmp_path / "q1.json"
    one.write_text('{"uplink_message": {"decoded_payload": {"contact": 1, "battery": 3.1}}}')
    two = tmp_path / "q2.json"
    two.write_text('{"contact": 0, "battery": 3.0}')
    out = tmp_path / "profiles"
    args = ["profiles", "suggest", str(one), str(two), "--id", "acme-x1", "--vendor", "Acme", "--model", "X1"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "acme-x1.yaml").read_text()
    assert "# REVIEW contact" in text
    profile = load_profiles([out]).get("acme-x1")
    assert profile is not None and [r.field for r in profile.rules] == ["contact", "battery"]


def test_profiles_test_shows_events() -> None:
    profile = Path(__file__).parents[1] / "adapters" / "profiles" / "dragino-lds01.yaml"
    result = CliRunner().invoke(main, ["profiles", "test", str(profile), str(LDS01)])
    assert result.exit_code == 0, result.output
    assert "door_closed False" in result.output and "volts=2.952" in result.output


def test_rules_test_finds_tests_recursively_and_skips_packs() -> None:
    rules_dir = Path(__file__).parents[1] / "rules"
    result = CliRunner().invoke(main, ["rules", "test", str(rules_dir)])
    assert result.exit_code == 0, result.output
    assert "pack files are not test files" in result.output
    assert " 0 failed" in result.output and not result.output.startswith("0 passed")
    packs = CliRunner().invoke(main, ["rules", "test", str(rules_dir / "packs")])
    assert "pack files are not test files" in packs.output and "FAIL" not in packs.output


def test_suggest_writes_into_the_configured_profiles_directory(tmp_path: Path) -> None:
    config = tmp_path / "linli.yaml"
    config.write_text("profile_paths: [site-profiles]\n")
    result = CliRunner().invoke(
        main,
        ["profiles", "suggest", str(LDS01), "--id", "site-lds", "--vendor", "Dragino", "--model", "LDS0x",
         "--config", str(config)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = tmp_path / "site-profiles" / "site-lds.yaml"
    profile = load_profiles([written]).get("site-lds")
    assert profile is not None and {r.field for r in profile.rules} == {"DOOR_OPEN_STATUS", "BAT_V"}
