"""The SOS trace: which stamps a press gets, on one injected monotonic clock."""

from __future__ import annotations

from hub.health.sos_trace import KEEP, SosTrace
from hub.records import Alert, AlertChange, Notification


def _alert(alert_id: int, device: str) -> Alert:
    return Alert(
        id=alert_id,
        rule="elderly.sos",
        subject=device,
        category="elderly",
        severity="critical",
        status="active",
        device_id=device,
        grid=None,
        community=None,
        title_zh="一键求助",
        title_en="SOS",
        raised_at=0.0,
        last_seen=0.0,
        count=1,
        resolved_at=None,
        trace={},
    )


def _note(alert_id: int, n: int) -> Notification:
    return Notification(f"n{alert_id}-{n}", alert_id, "g1-day", "mqtt", "t", b"{}", 0)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_a_press_on_the_lane_gets_every_stamp_in_order_and_only_the_first_publish_counts() -> None:
    trace = SosTrace(monotonic=Ticks())
    change = AlertChange(alert=_alert(7, "btn-1"), created=True, notifications=(_note(7, 1),))
    trace.received()  # 101
    trace.alert(change)  # 102
    trace.published(_note(7, 1))  # 103 (sent at wake, inside casework)
    trace.filed(change)  # 104
    trace.handled()
    trace.published(_note(7, 2))  # a second recipient: not the press's first notification
    snap = trace.snapshot()
    assert snap == {
        "received": {"btn-1": 101.0},
        "alert": {"btn-1": 102.0},
        "filed": {"btn-1": 104.0},
        "published": {"btn-1": 103.0},
    }


def test_an_alert_the_bulk_lane_brought_has_no_lane_stamp() -> None:
    trace = SosTrace(monotonic=Ticks())
    change = AlertChange(alert=_alert(8, "btn-2"), created=True, notifications=())
    trace.alert(change)
    assert "btn-2" not in trace.snapshot()["received"]
    assert "btn-2" in trace.snapshot()["alert"]


def test_bounded() -> None:
    trace = SosTrace(monotonic=Ticks())
    for i in range(KEEP + 10):
        trace.alert(AlertChange(alert=_alert(i, f"btn-{i}"), created=True, notifications=()))
    alerts = trace.snapshot()["alert"]
    assert len(alerts) == KEEP and "btn-0" not in alerts and f"btn-{KEEP + 9}" in alerts
