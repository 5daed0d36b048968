"""Scenario model validation, the shipped scenarios, and the runner against a fake hub."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from adapters.events import DeviceKind, EventKind
from adapters.router import AdapterRouter, FamilySource
from adapters.router import Family as HubFamily
from simulators.scenario import (
    AlertView,
    CaseView,
    NotificationView,
    ScenarioError,
    TimelineView,
    build_community,
    load_scenario,
    parse_scenario,
    resolve_actors,
    run_scenario,
    shipped_scenarios,
)

ROOT = Path(__file__).parents[1]
ROUTER = AdapterRouter(sources=[FamilySource(f) for f in HubFamily if f is not HubFamily.CHIRPSTACK_V3])

STORY = """
name: SOS at night
start: "2026-03-03T02:00:00+08:00"
community: {seed: 1}
actors:
  mrs_wang: {resident: r0005}
  worker: {person: g1-night}
steps:
  - {at: "02:13", do: press_sos, actor: mrs_wang, name: press}
  - {at: "02:15", do: accept, actor: worker, case: mrs_wang}
expect:
  alerts:
    - {rule: elderly.sos, subject: mrs_wang, status: active, at: "02:13"}
  notifications:
    - {type: case.notify, recipient: worker, case: mrs_wang, at: press}
    - {type: case.escalate, recipient: g1-leader, case: mrs_wang, at: "press+60s"}
  timeline:
    - {case: mrs_wang, action: accept, actor: worker, at: "02:15"}
  cases:
    - {case: mrs_wang, state: accepted}
"""


class FakeHub:
    """A tiny hub: SOS presses raise an alert and a case, notify g1-night, escalate after 60 s."""

    def __init__(self, kinds: dict[str, DeviceKind], *, escalate_after: float = 60.0) -> None:
        self.kinds = kinds
        self.now = 0.0
        self.escalate_after = escalate_after
        self.published: list[tuple[str, bytes, int]] = []
        self._alerts: list[AlertView] = []
        self._cases: dict[str, CaseView] = {}
        self._timeline: dict[str, list[TimelineView]] = {}
        self._notes: list[NotificationView] = []
        self.advances = 0

    def device_kind(self, device_id: str) -> DeviceKind | None:
        return self.kinds.get(device_id)

    def device_profile(self, device_id: str) -> str | None:
        return None

    def registered_id(self, device_id: str) -> str:
        return device_id

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.published.append((topic, payload, qos))
        if "/replies" in topic:
            return
        for event in ROUTER.decode(topic, payload, self.now, self):
            if event.kind is EventKind.SOS_PRESS:
                cid = f"c{len(self._cases) + 1}"
                self._alerts.append(
                    AlertView(
                        id=cid,
                        rule="elderly.sos",
                        subject=event.device_id,
                        status="active",
                        raised_at=self.now,
                    )
                )
                self._cases[cid] = CaseView(
                    id=cid, subject=event.device_id, state="dispatched", filed_at=self.now
                )
                self._timeline[cid] = [TimelineView(action="dispatch", actor="system", at=self.now)]
                self._notes.append(
                    NotificationView(recipient="g1-night", type="case.notify", at=self.now, case_id=cid)
                )

    async def advance_to(self, ts: float) -> None:
        self.advances += 1
        self.now = ts
        for cid, case in self._cases.items():
            due = case.filed_at + self.escalate_after
            sent = any(n.case_id == cid and n.type == "case.escalate" for n in self._notes)
            if case.state == "dispatched" and ts >= due and not sent:
                self._notes.append(
                    NotificationView(recipient="g1-leader", type="case.escalate", at=due, case_id=cid)
                )

    async def alerts(self) -> Sequence[AlertView]:
        return self._alerts

    async def cases(self) -> Sequence[CaseView]:
        return list(self._cases.values())

    async def case_timeline(self, case_id: str) -> Sequence[TimelineView]:
        return self._timeline[case_id]

    async def notifications(self) -> Sequence[NotificationView]:
        return self._notes

    async def act(self, case_id: str, action: str, actor: str, note: str) -> None:
        case = self._cases[case_id]
        if action == "accept" and case.state != "dispatched":
            raise RuntimeError(f"cannot accept a {case.state} case")
        self._cases[case_id] = CaseView(
            id=case.id, subject=case.subject, state="accepted", filed_at=case.filed_at, assignee=actor
        )
        self._timeline[case_id].append(TimelineView(action=action, actor=actor, at=self.now))

    async def evaluate(self, case_id: str, rating: str, note: str) -> None:
        raise NotImplementedError("the fake hub has no 评价 (tests/test_scenarios.py runs it on a real hub)")

    async def record_visit(self, elder: str, outcome: str, actor: str, note: str) -> None:
        raise NotImplementedError(
            "the fake hub has no visits (tests/test_scenarios.py runs them on a real hub)"
        )


def hub_for(text: str, **kwargs: float) -> tuple[FakeHub, object]:
    scenario = parse_scenario(text, file="story.yaml")
    community = build_community(scenario)
    return FakeHub({d.id: DeviceKind(d.kind) for d in community.devices}, **kwargs), scenario


def test_a_matching_hub_passes() -> None:
    hub, scenario = hub_for(STORY)
    result = asyncio.run(run_scenario(scenario, hub))  # type: ignore[arg-type]
    assert result.passed, result.diff
    assert "PASSED" in result.diff
    assert [q for _, _, q in hub.published].count(1) == 1  # the SOS press went at QoS 1
    assert any("accept" in line for line in result.log)


def test_a_late_escalation_fails_with_a_readable_diff() -> None:
    hub, scenario = hub_for(STORY, escalate_after=90.0)
    result = asyncio.run(run_scenario(scenario, hub))  # type: ignore[arg-type]
    assert not result.passed
    assert "FAILED: 1 expectation(s) not met" in result.diff
    assert "case.escalate → g1-leader for mrs_wang at 02:14:00 ±5s" in result.diff
    assert "nearest case.escalate → g1-leader at 02:14:30 (+30s)" in result.diff


def test_missing_things_and_refused_actions_are_reported() -> None:
    text = STORY.replace("status: active", "status: resolved").replace(
        '- {at: "02:15", do: accept, actor: worker, case: mrs_wang}',
        '- {at: "02:15", do: accept, actor: worker, case: mrs_wang}\n'
        '  - {at: "02:16", do: accept, actor: worker, case: mrs_wang}',
    )
    hub, scenario = hub_for(text)
    result = asyncio.run(run_scenario(scenario, hub))  # type: ignore[arg-type]
    assert not result.passed
    assert "hub refused: cannot accept a accepted case" in result.diff
    assert "alert: elderly.sos on mrs_wang resolved" in result.diff
    assert "actual:   none" in result.diff


def test_count_zero_means_none_may_match() -> None:
    text = STORY.replace(
        "    - {type: case.notify, recipient: worker, case: mrs_wang, at: press}",
        "    - {type: case.notify, recipient: worker, case: mrs_wang, count: 0}",
    )
    hub, scenario = hub_for(text)
    result = asyncio.run(run_scenario(scenario, hub))  # type: ignore[arg-type]
    assert not result.passed and "expected 0, got 1" in result.diff


def test_the_runner_moves_the_clock_in_strides() -> None:
    hub, scenario = hub_for(STORY.replace("community: {seed: 1}", "community: {seed: 1}\nstride: 10s"))
    asyncio.run(run_scenario(scenario, hub))  # type: ignore[arg-type]
    assert 15 * 6 <= hub.advances <= 15 * 6 + 60  # 02:00 → 02:15:05 in 10 s strides (+ heartbeats)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('start: "2026-03-03T02:00:00+08:00"', 'start: "2026-03-03T02:00:00"'),
            "story.yaml: start: start must be RFC 3339",
        ),
        (("do: press_sos", "do: press_button"), "story.yaml: steps[0].do: Input should be"),
        (('at: "02:13"', 'at: "25:13"'), "steps[0].at: '25:13' is not a time of day"),
        (("{resident: r0005}", "{resident: r0005, device: x}"), "actors.mrs_wang: an actor is exactly one"),
        (("case: mrs_wang}", "case: mr_nobody}"), "steps[1].case names unknown actor 'mr_nobody'"),
        (('at: "press+60s"', 'at: "pressed+60s"'), "expect.notifications[1].at names unknown step 'pressed'"),
        (("name: SOS at night", "name: SOS at night\ncolour: red"), "colour: Extra inputs are not permitted"),
        (
            ("{rule: elderly.sos,", "{rule: elderly.sos, tolerance: soon,"),
            "tolerance: 'soon' is not a duration",
        ),
    ],
)
def test_validation_errors_name_the_file_and_field(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in STORY
    with pytest.raises(ScenarioError) as info:
        parse_scenario(STORY.replace(old, new, 1), file="story.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("story.yaml: ")


def test_invalid_yaml_and_unknown_actor_targets() -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        parse_scenario("name: [", file="x.yaml")
    scenario = parse_scenario(STORY.replace("r0005", "r9999"), file="x.yaml")
    with pytest.raises(ScenarioError, match="resident r9999 has no devices"):
        resolve_actors(scenario, build_community(scenario))


# -- the shipped scenarios --------------------------------------------------------------------


SHIPPED = shipped_scenarios()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_load_and_resolve(path: Path) -> None:
    scenario = load_scenario(path)
    community = build_community(scenario)
    actors = resolve_actors(scenario, community)
    assert actors
    assert scenario.covers


def test_shipped_scenarios_cover_every_rule_and_escalation_path() -> None:
    rules = {
        rule["id"]
        for pack in (ROOT / "rules" / "packs").glob("*.yaml")
        for rule in yaml.safe_load(pack.read_text(encoding="utf-8"))["rules"]
    }
    covered = {c for path in SHIPPED for c in load_scenario(path).covers}
    assert rules - covered == set()
    for path in (
        "escalation.sos.dispatched.60s",
        "escalation.sos.dispatched.3m",
        "escalation.sos.dispatched.next_grid_worker",
        "escalation.sos.accepted.remind",
        "escalation.sos.accepted.5m",
        "escalation.sos.accepted.10m",
        "escalation.inactivity.guardians_10m",
        "escalation.inactivity.leader_30m",
    ):
        assert path in covered
