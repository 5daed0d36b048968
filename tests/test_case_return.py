"""退回 (return) of a case: it never waits in 立案 with nobody told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.cases.model import CaseAction, CaseState, Channel
from hub.casework.access import Actor
from hub.clock import ManualClock
from hub.errors import RequirementNotMet
from hub.records import Role
from tests.test_redelivery_idempotent import PRESS, SOS, TOPIC, hub_at

#: A car in the fire lane: the parking sensor of tests.helpers' registry (place fire-lane-b).
LANE = "zigbee2mqtt/lane-b-1"


def test_a_returned_case_goes_to_the_command_centre_at_once(tmp_path: Path) -> None:
    hub = hub_at(tmp_path, PRESS)
    clock = hub.clock
    assert isinstance(clock, ManualClock)
    try:
        hub.pipeline.handle(LANE, b'{"occupancy": true}', 1, False)
        clock.advance(120)  # over the fire lane's minute
        hub.pipeline.apply_signals(hub.evaluator.due(clock.now()))
        (case_id,) = hub.cases.case_ids()
        case = hub.cases.load(case_id)
        assert case is not None and case.state is CaseState.DISPATCHED and case.assignee == "w-night"
        told_before = len(hub.store.notification_log())

        clock.advance(30)
        worker = Actor("w-night", Role.GRID_WORKER)
        returned = hub.casework.act(
            case_id, CaseAction.RETURN, actor=worker, channel=Channel.CONSOLE, note="不属于本网格"
        )
        # Not left in 立案: handed on to the command centre's desk, and the desk is told now.
        assert returned.state is CaseState.DISPATCHED and returned.assignee == "command-centre"
        actions = [(e.action.value, e.actor) for e in hub.cases.timeline(case_id)]
        assert actions[-2:] == [("return", "w-night"), ("dispatch", "system")]
        told = hub.store.notification_log()[told_before:]
        assert any(n["recipient"] == "command-centre" for n in told), told
        # The desk dispatches it to the right person as before.
        desk = Actor("ops", Role.COMMAND_CENTRE)
        again = hub.casework.act(
            case_id, CaseAction.REASSIGN, actor=desk, channel=Channel.CONSOLE, data={"assignee": "w-day"}
        )
        assert again.state is CaseState.DISPATCHED and again.assignee == "w-day"
    finally:
        hub.store.close()


def test_an_sos_case_is_not_returned(tmp_path: Path) -> None:
    hub = hub_at(tmp_path, PRESS)
    try:
        hub.pipeline.handle(TOPIC, SOS, 1, False)
        (case_id,) = hub.cases.case_ids()
        with pytest.raises(RequirementNotMet, match="SOS"):
            hub.casework.act(
                case_id,
                CaseAction.RETURN,
                actor=Actor("w-night", Role.GRID_WORKER),
                channel=Channel.CONSOLE,
                note="不是我的",
            )
        case = hub.cases.load(case_id)
        assert case is not None and case.state is CaseState.DISPATCHED and case.assignee == "w-night"
    finally:
        hub.store.close()


def test_the_open_case_gauge_reads_a_case_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The gauge writer ran on the event loop and read every open case's timeline each time: with
    # 290 open cases a stall of 0.2-0.3 s that SOS presses waited out.
    hub = hub_at(tmp_path, PRESS)
    clock = hub.clock
    assert isinstance(clock, ManualClock)
    try:
        hub.pipeline.handle(TOPIC, SOS, 1, False)
        hub.pipeline.handle(LANE, b'{"occupancy": true}', 1, False)
        clock.advance(120)
        hub.pipeline.apply_signals(hub.evaluator.due(clock.now()))
        assert len(hub.cases.case_ids()) == 2
        reads: list[tuple[str, int]] = []  # (case, first entry read)
        timeline, timeline_from = hub.cases.timeline, hub.cases.timeline_from

        def counted(case_id: str) -> Any:
            reads.append((case_id, 0))
            return timeline(case_id)

        def counted_from(case_id: str, seq: int) -> Any:
            reads.append((case_id, seq))
            return timeline_from(case_id, seq)

        monkeypatch.setattr(hub.cases, "timeline", counted)
        monkeypatch.setattr(hub.cases, "timeline_from", counted_from)
        first = hub.casework.open_counts(clock.now())
        assert sorted(reads) == sorted((c, 0) for c in hub.cases.case_ids()) and sum(first.values()) == 2
        reads.clear()
        clock.advance(3600)  # later: the lights move on, the cases did not change
        later = hub.casework.open_counts(clock.now())
        assert reads == []
        (sos_id,) = [c for c in hub.cases.case_ids() if hub.cases.load(c).is_sos]  # type: ignore[union-attr]
        reads.clear()
        version = hub.cases.load(sos_id).version  # type: ignore[union-attr]
        hub.casework.act(
            sos_id, CaseAction.ACCEPT, actor=Actor("w-night", Role.GRID_WORKER), channel=Channel.CONSOLE
        )
        reads.clear()
        after = hub.casework.open_counts(clock.now())
        # Only the case that changed is read again, and only the entry it missed.
        assert reads == [(sos_id, version)]
        assert hub.casework._open_read[sos_id] == hub.cases.load(sos_id)
        hub.casework._open_read = {}  # a reader that keeps nothing counts the same
        assert hub.casework.open_counts(clock.now()) == after
        assert sum(later.values()) == sum(after.values()) == 2
    finally:
        hub.store.close()
