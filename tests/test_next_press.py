"""The elder's next press after a case was closed is a new alert and a new case, always.

Found in review, in three steps: an SOS alert is never cleared by a sensor, and closing its case
did not resolve it, so the next press landed on the same active alert — repeated (no case, nobody
told), or merged inside the SOS rule's 60 s window (the same), and a case that then failed to
open once was never retried (``reconcile`` looks for alerts that never had a case). A closed
case now resolves its alert in the same transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from hub.cases.model import CaseAction, Channel
from hub.clock import ManualClock
from tests.helpers import SOS_BUTTON, hub_settings
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
TOPIC = f"zigbee2mqtt/{SOS_BUTTON}"


@pytest.fixture
def hub(tmp_path: Path) -> Any:
    built = Hub(
        settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=ManualClock(start=PRESS)
    )
    yield built
    built.close()


def false_alarm(hub: Hub, case_id: str) -> None:
    """The everyday close: called back, 误按."""
    clock = hub.clock
    assert isinstance(clock, ManualClock)
    clock.advance(10)
    case = hub.cases.load(case_id)
    assert case is not None
    hub.casework._act(
        case,
        CaseAction.CALL_BACK,
        actor="duty",
        channel=Channel.SYSTEM,
        note="已回拨",
        data={"callback_at": clock.now()},
    )
    clock.advance(5)
    case = hub.cases.load(case_id)
    assert case is not None
    closed = hub.casework._act(
        case, CaseAction.FALSE_ALARM, actor="duty", channel=Channel.SYSTEM, note="误按", data={}
    )
    assert closed.state.value == "closed"


def new_case(hub: Hub, old: str) -> str:
    (case_id,) = [c for c in hub.cases.case_ids() if c != old]
    case = hub.cases.load(case_id)
    assert case is not None and case.state.value == "dispatched"
    return case_id


def test_closing_a_case_resolves_its_alert(hub: Hub) -> None:
    hub.pipeline.handle(TOPIC, SOS, 1)
    (first,) = hub.cases.case_ids()
    false_alarm(hub, first)
    assert [a.status for a in hub.store.alerts()] == ["resolved"]


@pytest.mark.parametrize("after_s", [20.0, 2 * 86400.0], ids=["inside-the-merge-window", "two-days-later"])
def test_the_next_press_is_a_new_alert_and_a_new_case(hub: Hub, after_s: float) -> None:
    hub.pipeline.handle(TOPIC, SOS, 1)
    (first,) = hub.cases.case_ids()
    false_alarm(hub, first)  # closed 15 s after the press
    assert isinstance(hub.clock, ManualClock)
    hub.clock.advance(after_s)
    hub.pipeline.handle(TOPIC, SOS, 1)
    second = new_case(hub, first)
    statuses = sorted((a.id, a.status) for a in hub.store.alerts())
    assert [s for _, s in statuses] == ["resolved", "active"]
    assert hub.cases.load(second).alert_id == statuses[1][0]  # type: ignore[union-attr]


def test_a_new_case_that_failed_to_open_is_opened_by_the_casework_loop(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.pipeline.handle(TOPIC, SOS, 1)
    (first,) = hub.cases.case_ids()
    false_alarm(hub, first)
    assert isinstance(hub.clock, ManualClock)
    hub.clock.advance(2 * 86400)
    real_add = hub.cases.add
    refusals = [RuntimeError("database is locked")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return real_add(*args, **kwargs)

    monkeypatch.setattr(hub.cases, "add", flaky)
    hub.pipeline.handle(TOPIC, SOS, 1)
    assert not refusals and [c for c in hub.cases.case_ids() if c != first] == []
    hub.casework.reconcile()  # what the casework loop runs every few seconds
    new_case(hub, first)
