"""The SOS priority lane: a press behind a backlog is handled first, and once.

Unit tests of the lane guard (hub/ingest/lanes.py) and the lane's topics, then the hub on a
real Mosquitto: a press queued behind thousands of sensor messages, the same press arriving
on both lanes, two presses with identical bytes. The kill -9 case is in
tests/test_priority_lane_kill9.py.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from adapters.router import Family, FamilySource
from hub.app import Hub
from hub.clock import ManualClock
from hub.community.files import load_yaml
from hub.community.registry import Registry
from hub.errors import MessageDeferred
from hub.ingest.lanes import Lane, LaneGuard
from hub.ingest.priority import priority_topics
from hub.mqtt.client import Unhandled, marked_dup
from hub.records import AlertChange
from tests.helpers import COMMUNITY, REGISTRY, SOS_BUTTON, Phone, eventually, hub_settings, publisher
from tests.support.samples import SAMPLES
from tests.support.servers import Broker
from tests.test_redelivery_idempotent import PRESS, hub_at, reminders

SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
SOS_TOPIC = f"zigbee2mqtt/{SOS_BUTTON}"
WORKERS = f"linli/{COMMUNITY}/workers/+/notifications"


class Recorder:
    """Stands in for the hub's handler: records calls; ``repeats`` plays the store's answer."""

    def __init__(self, *, known: frozenset[bytes] = frozenset()) -> None:
        self.calls: list[tuple[str, bytes, bool]] = []
        self.repeats = 0
        self._known = known

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False) -> None:
        self.calls.append((topic, payload, dup))
        if dup and payload in self._known:
            self.repeats += 1  # the store recognised an occurrence it had recorded


def guard(
    recorder: Recorder, clock: ManualClock, *, cold_s: float = 60.0, max_entries: int = 100
) -> LaneGuard:
    return LaneGuard(
        handler=recorder,
        clock=clock,
        repeats=lambda: recorder.repeats,
        topics=["z/button"],
        cold_s=cold_s,
        max_entries=max_entries,
    )


def test_the_copy_on_the_other_lane_is_skipped_whichever_lane_is_first() -> None:
    recorder, clock = Recorder(), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    lanes.priority("z/button", b"a", 1, False)
    lanes.bulk("z/button", b"a", 1, False)
    lanes.bulk("z/button", b"b", 1, False)  # the bulk lane first this time
    lanes.priority("z/button", b"b", 1, False)
    assert [c[1] for c in recorder.calls] == [b"a", b"b"]
    assert lanes.skipped == 2
    assert lanes.handled == {Lane.PRIORITY: 1, Lane.BULK: 1}


def test_two_presses_with_identical_bytes_are_two_presses() -> None:
    recorder, clock = Recorder(), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    lanes.priority("z/button", b"press", 1, False)
    lanes.priority("z/button", b"press", 1, False)
    lanes.bulk("z/button", b"press", 1, False)
    lanes.bulk("z/button", b"press", 1, False)
    lanes.bulk("z/button", b"press", 1, False)  # a third press the priority lane has not had yet
    lanes.priority("z/button", b"press", 1, False)
    assert len(recorder.calls) == 3
    assert lanes.skipped == 3


def test_topics_not_shared_pass_straight_through_the_bulk_lane() -> None:
    recorder, clock = Recorder(), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    for _ in range(3):
        lanes.bulk("z/door", b"same", 1, False)
    assert len(recorder.calls) == 3
    assert all(dup is False for _, _, dup in recorder.calls)
    assert lanes.skipped == 0


def test_after_a_restart_a_copy_the_store_recognises_is_not_owed_to_the_other_lane() -> None:
    """The previous run handled ``old`` on the priority lane; its bulk copy comes after the restart."""
    recorder, clock = Recorder(known=frozenset({b"old"})), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    lanes.bulk("z/button", b"old", 1, False)
    assert recorder.calls == [("z/button", b"old", True)]  # handled as a possible redelivery
    assert recorder.repeats == 1
    # A real new press with the very same bytes: its priority copy is handled, not skipped.
    lanes.priority("z/button", b"old", 1, False)
    assert len(recorder.calls) == 2
    assert recorder.calls[1][2] is False  # seen since the start: a new press, no store check
    lanes.bulk("z/button", b"old", 1, False)
    assert len(recorder.calls) == 2


def test_a_priority_copy_sent_again_after_a_crash_has_its_bulk_twin_checked_too() -> None:
    """Killed before the broker got the priority lane's PUBACK: both lanes get a copy again.

    The broker resends the priority copy with DUP; the bulk copy was never sent, so it comes
    without DUP, after the restarted hub has seen the digest. It must still be checked.
    """
    recorder, clock = Recorder(known=frozenset({b"old"})), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    lanes.priority("z/button", b"old", 1, False, True)
    lanes.bulk("z/button", b"old", 1, False)
    assert recorder.calls == [("z/button", b"old", True), ("z/button", b"old", True)]
    assert recorder.repeats == 2  # both recognised: the press counts once
    assert lanes.cold_copies == 1  # the bulk copy: the broker had not flagged it
    # A real new press with the same bytes afterwards is handled once, as usual.
    lanes.priority("z/button", b"old", 1, False)
    lanes.bulk("z/button", b"old", 1, False)
    assert recorder.calls[2:] == [("z/button", b"old", False)]
    assert lanes.skipped == 1


def test_a_copy_sent_again_on_a_reconnect_is_recognised_and_not_owed() -> None:
    """Long after the start (no cold window): the broker's DUP alone sends the copy to the store."""
    recorder, clock = Recorder(known=frozenset({b"p"})), ManualClock(start=1000.0)
    lanes = guard(recorder, clock, cold_s=60.0)
    clock.set(5000.0)
    lanes.priority("z/button", b"p", 1, False)  # the press: the store records it
    lanes.bulk("z/button", b"p", 1, False)  # its twin: skipped
    lanes.priority("z/button", b"p", 1, False, True)  # PUBACK lost on a reconnect: sent again
    assert recorder.repeats == 1
    # Nothing owed for the recognised copy: the next press's bulk copy, arriving first, is
    # handled (checked, as the priority twin was a recognised copy), and its priority copy
    # is then skipped as owed, or handled if the store took the bulk copy for the old one.
    lanes.bulk("z/button", b"p", 1, False)
    lanes.priority("z/button", b"p", 1, False)
    assert [dup for _, _, dup in recorder.calls] == [False, True, True, False]
    assert recorder.repeats == 2


def test_a_bulk_copy_checked_by_mistake_leaves_the_new_press_to_the_priority_lane() -> None:
    """The bulk twin was skipped before the crash, so the check waits for a real new press."""
    recorder, clock = Recorder(known=frozenset({b"old"})), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    lanes.priority("z/button", b"old", 1, False, True)  # recognised; no bulk copy will come
    lanes.bulk("z/button", b"old", 1, False)  # a new press, on the bulk lane first: checked
    assert recorder.repeats == 2  # the store took it for the old one (same bytes) …
    lanes.priority("z/button", b"old", 1, False)  # … so its priority copy is handled
    assert recorder.calls[-1] == ("z/button", b"old", False)
    assert lanes.skipped == 0


def test_a_new_message_after_a_restart_is_owed_as_usual() -> None:
    recorder, clock = Recorder(), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    lanes.bulk("z/button", b"new", 1, False)
    lanes.priority("z/button", b"new", 1, False)
    assert len(recorder.calls) == 1
    assert lanes.skipped == 1


def test_the_cold_start_ends_and_the_window_is_bounded_by_count() -> None:
    recorder, clock = Recorder(), ManualClock(start=1000.0)
    lanes = guard(recorder, clock, cold_s=60.0, max_entries=2)
    lanes.bulk("z/button", b"a", 1, False)  # in the cold start: a possible redelivery
    clock.set(1061.0)
    lanes.bulk("z/button", b"b", 1, False)  # after it: a new message, no store check
    lanes.bulk("z/button", b"c", 1, False)  # pushes "a" out of the two-digest window
    lanes.priority("z/button", b"a", 1, False)  # its twin is forgotten: handled again
    lanes.priority("z/button", b"c", 1, False)  # still owed: skipped
    assert [(p, dup) for _, p, dup in recorder.calls] == [
        (b"a", True),
        (b"b", False),
        (b"c", False),
        (b"a", False),
    ]
    assert lanes.skipped == 1


def test_a_new_press_on_the_priority_lane_after_a_restart_is_never_taken_for_the_old_one() -> None:
    """Found in review: within the cold start every unseen digest was a possible redelivery on
    both lanes, and a button sends the same bytes on every press: an elder's second press after
    a restart, while the first press's case was open, was dropped as that first press. The
    priority lane is never behind: only the broker's DUP makes its copy a possible redelivery."""
    recorder, clock = Recorder(known=frozenset({b"press"})), ManualClock(start=1000.0)
    lanes = guard(recorder, clock)
    lanes.priority("z/button", b"press", 1, False)
    assert recorder.calls == [("z/button", b"press", False)] and recorder.repeats == 0
    lanes.bulk("z/button", b"press", 1, False)  # its bulk copy: owed, skipped
    assert lanes.skipped == 1 and len(recorder.calls) == 1


def test_a_retained_replay_neither_pays_nor_is_paid_a_copy() -> None:
    """Found in review (real Mosquitto): a lane newly subscribed gets only the retained replay
    of a press the other lane still has queued live; the replay's debt made that lane skip the
    live press, and the press was lost."""
    recorder, clock = Recorder(), ManualClock(start=1000.0)
    lanes = guard(recorder, clock, cold_s=0.0)
    lanes.priority("z/button", b"press", 1, True)  # the new priority session: the retained replay
    lanes.bulk("z/button", b"press", 1, False)  # the bulk session's queued live press
    lanes.bulk("z/button", b"press", 1, True)  # and its own retained replay on resubscribing
    assert [(p, dup) for _, p, dup in recorder.calls] == [(b"press", False)] * 3
    assert lanes.skipped == 0
    lanes.priority("z/button", b"next", 1, False)  # live copies still pay for each other
    lanes.bulk("z/button", b"next", 1, False)
    assert lanes.skipped == 1


def test_a_handler_failure_still_owes_the_copy() -> None:
    """The hub's retry queue handles a failed message later; the other lane's copy must not count twice."""

    def failing(topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False) -> None:
        raise RuntimeError("database locked")

    lanes = LaneGuard(handler=failing, clock=ManualClock(start=0.0), repeats=lambda: 0, topics=["z/b"])
    with pytest.raises(RuntimeError):
        lanes.priority("z/b", b"x", 1, False)
    lanes.bulk("z/b", b"x", 1, False)
    assert lanes.skipped == 1


def test_priority_topics_are_the_sos_capable_devices_exact_topics(tmp_path: Path) -> None:
    path = tmp_path / "community.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    registry = Registry(communities=load_yaml(path))
    sources = [FamilySource(Family.ZIGBEE2MQTT), FamilySource(Family.NATIVE), FamilySource(Family.TTN_V3)]
    assert priority_topics(registry, sources) == [
        f"zigbee2mqtt/{SOS_BUTTON}",
        f"linli/{COMMUNITY}/devices/{SOS_BUTTON}/events",
        "zigbee2mqtt/heiman-1",
        f"linli/{COMMUNITY}/devices/heiman-1/events",
    ]
    assert priority_topics(registry, [FamilySource(Family.TTN_V3)]) == []


# -- the hub on a real Mosquitto ------------------------------------------------------------------

BACKLOG = 4000


def door(i: int) -> bytes:
    return orjson.dumps({"contact": True, "battery": 90, "linkquality": i % 250, "seq": i})


async def test_a_press_behind_a_backlog_is_handled_before_the_backlog_drains(
    tmp_path: Path, mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings):
        pass  # both persistent sessions and their subscriptions now exist at the broker
    # While the hub is down the broker queues a backlog, then the press, for its sessions.
    watcher = Phone(mosquitto_broker, client_id="watcher")
    await watcher.start("zigbee2mqtt/#")
    gateway = await publisher(mosquitto_broker)
    for i in range(BACKLOG):
        gateway.publish("zigbee2mqtt/door-1", door(i), qos=1)
    gateway.publish(SOS_TOPIC, SOS, qos=1)
    await eventually(lambda: len(watcher.messages) == BACKLOG + 1, what="the broker routed everything")
    phone = Phone(mosquitto_broker)
    await phone.start(WORKERS)

    hub = Hub(settings=settings)
    handled_when_raised: list[int] = []
    original = hub.casework.on_alert_change

    def noted(change: AlertChange) -> None:
        handled_when_raised.append(hub.pipeline.stats.messages)
        original(change)

    monkeypatch.setattr(hub.casework, "on_alert_change", noted)
    async with hub:
        await eventually(lambda: hub.pipeline.stats.messages >= BACKLOG + 1, within=60, what="the backlog")
        await eventually(lambda: hub.lanes.skipped == 1, what="the bulk lane's copy of the press")
        await eventually(lambda: phone.messages, what="the worker's notification")
        alerts = hub.store.alerts()
        cases = hub.cases.case_ids()
    await gateway.disconnect()
    await watcher.stop()
    await phone.stop()
    # Without the lane the press would be the backlog's last message (BACKLOG + 1 handled).
    assert handled_when_raised and handled_when_raised[0] < BACKLOG // 4, handled_when_raised
    print(f"the press was handled as message {handled_when_raised[0]} of {BACKLOG + 1}")
    (alert,) = alerts
    assert (alert.rule, alert.device_id, alert.count) == ("elderly.sos", SOS_BUTTON, 1)
    assert len(cases) == 1
    assert hub.pipeline.stats.messages == BACKLOG + 1  # the copy was not handled again
    assert hub.lanes.handled[Lane.PRIORITY] == 1


async def test_the_same_press_on_both_lanes_is_one_alert_case_and_notification(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    phone = Phone(mosquitto_broker)
    await phone.start(WORKERS)
    async with Hub(settings=settings) as hub:
        assert hub.priority is not None
        await eventually(hub.priority.subscribed.is_set, what="the priority lane's SUBACK")
        gateway = await publisher(mosquitto_broker)
        gateway.publish(SOS_TOPIC, SOS, qos=1)
        await eventually(lambda: hub.lanes.skipped == 1, what="the second copy")
        await eventually(lambda: phone.messages, what="the notification")
        await eventually(
            lambda: not hub.store.pending_notifications(now=hub.clock.now() + 1), what="delivery"
        )
        alerts = hub.store.alerts()
        cases = hub.cases.case_ids()
        log = hub.store.notification_log()
        await gateway.disconnect()
    await phone.stop()
    (alert,) = alerts
    assert alert.count == 1
    assert len(cases) == 1
    assert hub.pipeline.stats.messages == 1
    # The assignee and the duty officer, each told once (a second handling would tell them again).
    recipients = [(topic, body["type"]) for topic, body, _ in phone.messages]
    assert len(recipients) == len(set(recipients)) == 2, recipients
    assert [n["type"] for n in log].count("case.repeated") == 0


async def test_two_presses_with_the_same_bytes_are_both_counted(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings) as hub:
        assert hub.priority is not None
        await eventually(hub.priority.subscribed.is_set, what="the priority lane's SUBACK")
        gateway = await publisher(mosquitto_broker)
        gateway.publish(SOS_TOPIC, SOS, qos=1)
        await eventually(lambda: hub.lanes.skipped == 1, what="the first press's second copy")
        gateway.publish(SOS_TOPIC, SOS, qos=1)
        await eventually(lambda: hub.lanes.skipped == 2, what="the second press's second copy")
        alerts = hub.store.alerts()
        cases = hub.cases.case_ids()
        await gateway.disconnect()
    (alert,) = alerts
    assert alert.count == 2
    assert len(cases) == 1
    assert hub.pipeline.stats.messages == 2


@pytest.mark.parametrize("first", ["priority", "bulk"])
def test_an_elders_second_press_after_a_restart_counts_and_reminds(tmp_path: Path, first: str) -> None:
    """The hub end to end (review): press, clean restart, the same bytes pressed again ten
    minutes later, its two copies arriving in either order. It is the second press: counted on
    the open alert and, priority copy first, a reminder to the worker (it was dropped as a copy
    of the first)."""
    hub = hub_at(tmp_path, PRESS)
    hub.lanes.priority(SOS_TOPIC, SOS, 1, False)
    hub.lanes.bulk(SOS_TOPIC, SOS, 1, False)
    hub.close()
    again = hub_at(tmp_path, PRESS + 600)
    lanes = [again.lanes.priority, again.lanes.bulk]
    for take in lanes if first == "priority" else lanes[::-1]:
        take(SOS_TOPIC, SOS, 1, False)
    (alert,) = again.store.alerts()
    assert alert.count == 2
    # Bulk first (the priority lane is never behind, so rarely): the bulk copy in the cold start
    # is checked as a possible copy of the old press and recognised, after the rules saw it; its
    # priority twin then counts within the rule's merge window, without a second reminder.
    assert len(reminders(again)) == (1 if first == "priority" else 0)
    again.close()


async def test_a_retained_press_queued_for_the_bulk_session_is_not_lost_to_a_new_lane(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    """Review, on Mosquitto: the hub ran without the lane (its bulk session exists); a retained
    press is published while it is down; it starts with the lane. The new priority session gets
    only the retained replay, the bulk session the queued live press and a replay."""
    lane_off = {"url": mosquitto_broker.url, "client_id": "linli-hub-test", "priority_lane": False}
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker, mqtt=lane_off)):
        pass
    gateway = await publisher(mosquitto_broker)
    gateway.publish(SOS_TOPIC, SOS, qos=1, retain=True)
    await gateway.disconnect()
    hub = Hub(settings=hub_settings(tmp_path, mosquitto_broker))
    async with hub:
        await eventually(lambda: len(hub.store.alerts()) == 1, what="the queued press recorded")
        assert hub.lanes.handled[Lane.PRIORITY] >= 1, "the lane was on and got its replay"


def test_a_cold_copy_held_for_retry_is_retried_as_a_possible_copy(tmp_path: Path) -> None:
    """Review: the guard asks the store about a cold bulk copy (``dup``); held behind an earlier
    message of its device and retried without the guard, it was a second press."""
    hub = hub_at(tmp_path, PRESS)
    try:
        hub.pipeline.handle(SOS_TOPIC, SOS, 1, False)  # the previous run's press, recorded
        hub.redelivery.hold(Unhandled(SOS_TOPIC, b'{"battery": 90}', 1, False, None, OSError("x")))
        with pytest.raises(MessageDeferred) as deferred:
            hub.lanes.bulk(SOS_TOPIC, SOS, 1, False)  # its bulk copy, in the cold start
        # As HubMqttClient hands it to the retry queue:
        hub.redelivery.hold(
            Unhandled(SOS_TOPIC, SOS, 1, False, None, deferred.value, marked_dup(deferred.value))
        )
        assert hub.redelivery.retry_now() == 2
        (alert,) = hub.store.alerts()
        assert alert.count == 1 and reminders(hub) == []
    finally:
        hub.close()
