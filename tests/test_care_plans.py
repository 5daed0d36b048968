"""Care-plan overrides per community, grid and resident from the site's ``care.yaml`` next to the
community file (issue 18): merged over the shipped defaults, checked against the registry, and used
by a real hub's scheduler on both store engines."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.app import Hub
from hub.cases.care import Elder, PlanPatch, TaskKind, load_care, plan_for
from hub.casework.care_plans import load_site_care
from hub.casework.elders import register
from hub.casework.signs import NoSign
from hub.cli.service import care_finding
from hub.community.files import IMPORTED_MARK, parse_yaml
from hub.community.registry import Registry
from hub.errors import PolicyError
from hub.storage.store import Store
from hub.timeseries import Level
from tests.helpers import COMMUNITY, GRID, REGISTRY, TOKEN, eventually, hub_settings
from tests.support.servers import Broker
from tests.test_case_flow import call
from tests.test_visits import hub_with_phone

DAY = 86400.0


@pytest.fixture
def community(tmp_path: Path) -> tuple[Path, Registry]:
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    return path, Registry.load(path)


def _r1(registry: Registry) -> Elder:
    (entry,) = [e for e in register(registry) if e.elder.id == "r1"]
    return entry.elder


def test_without_a_site_file_the_shipped_defaults_apply(community: tuple[Path, Registry]) -> None:
    path, registry = community
    assert load_site_care(path, registry) == load_care()
    assert load_site_care(None, registry) == load_care()


def test_overrides_by_community_grid_and_resident_most_specific_last(
    community: tuple[Path, Registry],
) -> None:
    path, registry = community
    (path.parent / "care.yaml").write_text(
        f"""
overrides:
  - {{resident: r1, plan: {{visit: 2d}}}}
  - {{community: "{COMMUNITY}", plan: {{visit: 3d, call: 14d}}}}
  - {{grid: "{GRID}", plan: {{call: null}}}}
due_time: "09:00"
""",
        encoding="utf-8",
    )
    care = load_site_care(path, registry)
    # Keys the site wrote replace the defaults'; the rest (flags, escalation) stay shipped.
    assert care.due_time.hour == 9 and care.flags == load_care().flags and care.escalation
    plan = plan_for(care, _r1(registry))
    assert plan.intervals[TaskKind.VISIT] == 2 * DAY  # the resident's entry beats the community's
    assert TaskKind.CALL not in plan.intervals  # the grid switched calls off over the community's 14d
    assert plan.intervals[TaskKind.SIGN_OF_LIFE] == DAY  # from his flags (living alone, 83)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{resident: r404, plan: {visit: 2d}}", "overrides[0]: no resident 'r404'"),
        ('{grid: "110105001001999", plan: {visit: 2d}}', "no grid '110105001001999'"),
        ('{community: "110105001999", plan: {visit: 2d}}', "no community '110105001999'"),
        ("{plan: {visit: 2d}}", "names no community, grid or resident"),
        ("{resident: r1, plan: {visit: 0s}}", "interval must be > 0"),
        ("{resident: r1, plan: {visits: 2d}}", "visits"),
    ],
)
def test_a_bad_override_is_refused_naming_the_file_and_entry(
    community: tuple[Path, Registry], entry: str, message: str
) -> None:
    path, registry = community
    (path.parent / "care.yaml").write_text(f"overrides:\n  - {entry}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        load_site_care(path, registry)
    assert str(path.parent / "care.yaml") in str(refused.value) and message in str(refused.value)


def test_a_site_file_that_is_not_a_mapping_is_refused(community: tuple[Path, Registry]) -> None:
    path, registry = community
    (path.parent / "care.yaml").write_text("- visit: 2d\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="a care file is a mapping"):
        load_site_care(path, registry)


async def test_the_hub_schedules_from_the_site_overrides(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    # hub_settings writes community.yaml into tmp_path: the site file sits next to it.
    (tmp_path / "care.yaml").write_text(
        "overrides:\n  - {resident: r1, plan: {visit: 2d, sign_of_life: null}}\n", encoding="utf-8"
    )
    async with hub_with_phone(tmp_path, mosquitto_broker, store_url) as (hub, _):
        visit = await eventually(lambda: hub.visits.visits.open_task("r1", TaskKind.VISIT), what="r1's visit")
        # Registered Monday 2026-11-23 02:13 local: the resident's 2-day plan, not the weekly default.
        due = datetime.fromtimestamp(visit.task.due_at, ZoneInfo("Asia/Shanghai"))
        assert (due.date().isoformat(), due.hour) == ("2026-11-25", 18)
        # His door could give a sign, but his plan switched it off: not scheduled, and the register says so.
        assert hub.visits.visits.open_task("r1", TaskKind.SIGN_OF_LIFE) is None
        status, elders = await call(hub, "GET", "/api/elders", TOKEN)
        assert status == 200
        assert [e["sign_of_life"] for e in elders if e["id"] == "r1"] == [NoSign.NOT_PLANNED.text]


def test_plan_patch_intervals_tell_off_from_inherit_and_are_callers_own() -> None:
    """``intervals()`` is memoised per patch (asked for every elder each round): a field written
    as null (off) and one left out (inherit) stay apart, and each caller gets its own dict."""
    off = PlanPatch.model_validate({"visit": None, "call": "1d"})
    inherit = PlanPatch.model_validate({"call": "1d"})
    assert off == inherit  # equal models…
    assert off.intervals() == {TaskKind.VISIT: None, TaskKind.CALL: DAY}  # …different meaning
    assert inherit.intervals() == {TaskKind.CALL: DAY}
    mine = inherit.intervals()
    mine[TaskKind.VISIT] = 1.0
    assert inherit.intervals() == {TaskKind.CALL: DAY}
    assert PlanPatch.model_validate({"sign_of_life": "90m"}).intervals() == {TaskKind.SIGN_OF_LIFE: 5400.0}


@pytest.mark.parametrize(
    "text",
    [
        "overrides:\n  - {resident: r9999, plan: {visit: 2d}}\n",
        "overrides: [ {resident: r1, plan: {visit: 2d}\n",
    ],
    ids=["unknown-resident", "yaml-typo"],
)
def test_a_refused_site_file_leaves_the_defaults_and_the_hub_starts(tmp_path: Path, text: str) -> None:
    """Found in review: one typo in ``care.yaml``, or an override of a resident whose community
    file was refused at this start, stopped the start of every community's SOS handling. The hub
    starts on the shipped plans, says so, and ``linli doctor`` names the file."""
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"))
    (tmp_path / "care.yaml").write_text(text, encoding="utf-8")
    hub = Hub(settings=settings)
    try:
        assert hub.visits.care == load_care()
        assert any("care plans were refused" in w for w in hub.start_warnings), hub.start_warnings
    finally:
        hub.close()
    finding = care_finding(settings)
    assert finding is not None and finding.level is Level.ERROR and "care.yaml" in finding.message
    (tmp_path / "care.yaml").write_text(
        "overrides:\n  - {resident: r1, plan: {visit: 2d}}\n", encoding="utf-8"
    )
    finding = care_finding(settings)
    assert finding is not None and finding.level is Level.OK


def test_doctor_checks_care_overrides_against_the_store_too(tmp_path: Path) -> None:
    """Review: doctor read the community file only, and refused an override of a resident the
    store holds from a CSV import, which the hub takes."""
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"))
    (community,) = parse_yaml(REGISTRY, file="test")
    (r1,) = community.residents
    stored = community.model_copy(update={"residents": (r1, dataclasses.replace(r1, id="r77"))})
    Path(settings.data_dir).mkdir(mode=0o700)
    store = Store(path=Path(settings.data_dir) / "linli.sqlite3")
    store.save_communities([stored], at=1.0)
    store.close()
    # As after a start that imported the file (its mark), then `community import` of a CSV:
    # the next start skips the unchanged file, and the store with r77 is the registry.
    digest = hashlib.sha256(Path(str(settings.community_file)).read_bytes()).hexdigest()
    (Path(settings.data_dir) / IMPORTED_MARK).write_text(digest + "\n", encoding="ascii")
    (tmp_path / "care.yaml").write_text(
        "overrides:\n  - {resident: r77, plan: {visit: 2d}}\n", encoding="utf-8"
    )
    finding = care_finding(settings)
    assert finding is not None and finding.level is Level.OK, finding
