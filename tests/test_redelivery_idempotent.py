"""A press the broker redelivers (DUP set) after a crash is the same press: counted once, no false reminder."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.config import load_settings
from hub.mqtt.client import Unhandled
from hub.records import Alert
from tests.helpers import REGISTRY, SOS_BUTTON
from tests.support.samples import SAMPLES

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai: the night shift
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
TOPIC = f"zigbee2mqtt/{SOS_BUTTON}"


def hub_at(tmp_path: Path, now: float) -> Hub:
    (tmp_path / "community.yaml").write_text(REGISTRY, encoding="utf-8")
    settings = load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "community_file": str(tmp_path / "community.yaml"),
            "mqtt": {"url": "mqtt://127.0.0.1:1", "client_id": "idempotent-test"},
        },
    )
    return Hub(settings=settings, clock=ManualClock(start=now))


def crash_after_commit_before_flush(hub: Hub) -> None:
    """kill -9 after the alert's commit, before the rule state of that loop turn reached disk."""
    file = hub.rule_runtime.state_store.file
    assert file is not None and file.wait(10)
    with contextlib.closing(sqlite3.connect(file.path, isolation_level=None)) as db:
        assert db.execute("DELETE FROM rule_state").rowcount > 0, "the press's rule state was on disk"
    hub.store.close()


def reminders(hub: Hub) -> list[dict[str, object]]:
    return [n for n in hub.store.notification_log() if n["type"] == "case.repeated"]


def test_a_redelivered_press_is_the_same_press(tmp_path: Path) -> None:
    first = hub_at(tmp_path, PRESS)
    first.pipeline.handle(TOPIC, SOS, 1, False)
    (alert,) = first.store.alerts()
    crash_after_commit_before_flush(first)

    second = hub_at(tmp_path, PRESS + 70)  # restarted past the merge window
    second.pipeline.handle(TOPIC, SOS, 1, False, True)  # the broker resends it with DUP set
    (again,) = second.store.alerts()
    assert (again.id, again.count) == (alert.id, 1)
    assert len(second.cases.case_ids()) == 1
    assert reminders(second) == []
    second.store.close()


def test_a_new_press_after_the_window_still_reminds(tmp_path: Path) -> None:
    """The contrast: the same bytes without DUP are a new press, and whoever has the case is reminded."""
    first = hub_at(tmp_path, PRESS)
    first.pipeline.handle(TOPIC, SOS, 1, False)
    crash_after_commit_before_flush(first)

    second = hub_at(tmp_path, PRESS + 70)
    second.pipeline.handle(TOPIC, SOS, 1, False, False)
    (alert,) = second.store.alerts()
    assert alert.count == 2
    assert len(reminders(second)) == 1
    second.store.close()


#: A button whose clock is stuck: every press it sends is these bytes.
STUCK = orjson.dumps({"action": "emergency", "last_seen": int((PRESS - 5) * 1000)})


def pressed_and_resent(tmp_path: Path) -> tuple[Hub, ManualClock, Alert]:
    """A stuck button's press, then the broker's DUP copy of it: one alert, counted once."""
    hub = hub_at(tmp_path, PRESS)
    clock = hub.clock
    assert isinstance(clock, ManualClock)
    hub.pipeline.handle(TOPIC, STUCK, 1, False)
    (alert,) = hub.store.alerts()
    hub.pipeline.handle(TOPIC, STUCK, 1, False, True)  # the broker resends it: the same press
    assert [a.count for a in hub.store.alerts()] == [1]
    return hub, clock, alert


def test_a_button_whose_clock_is_stuck_is_heard_at_every_press(tmp_path: Path) -> None:
    # The gateway stamps every press with the same device time (a reset RTC, a frozen
    # ``last_seen``): each new message is still a press; only a DUP copy is the same one.
    hub, clock, alert = pressed_and_resent(tmp_path)
    assert alert.raised_at == PRESS - 5  # the first press keeps the device's time

    clock.advance(3600)  # an hour later, the alert still open: the elder presses again
    hub.pipeline.handle(TOPIC, STUCK, 1, False)
    (again,) = hub.store.alerts()
    assert (again.id, again.count, again.last_seen) == (alert.id, 2, PRESS + 3600)
    assert len(reminders(hub)) >= 1, "a press after the merge window reminds the worker"
    assert hub.pipeline.stats.presses_restamped == 1

    with hub.store.transaction() as tx:
        assert hub.store.resolve_alert(tx, alert.id, at=clock.now()) is not None
    clock.advance(600)  # resolved; ten minutes later another press with the same stuck time
    hub.pipeline.handle(TOPIC, STUCK, 1, False)
    active = [a for a in hub.store.alerts() if a.status == "active"]
    assert len(active) == 1 and active[0].id != alert.id, "a new alert, not a dropped press"
    assert active[0].raised_at == PRESS + 4200
    assert active[0].trace["occurrences"][0]["event"]["attrs"]["device_ts"] == PRESS - 5
    hub.store.close()


def test_a_stuck_buttons_press_that_only_arrives_as_a_dup_copy_is_still_a_press(tmp_path: Path) -> None:
    """The connection dropped with the press in flight; the broker resends it with DUP set.

    With a stuck device clock its bytes are those of the last press, whose alert is resolved:
    the broker's "this may be a copy" must not make it that press's copy (it was dropped so).
    A DUP copy of a press an *active* alert recorded stays one press (the contrast).
    """
    hub, clock, alert = pressed_and_resent(tmp_path)
    with hub.store.transaction() as tx:
        assert hub.store.resolve_alert(tx, alert.id, at=clock.now()) is not None

    clock.advance(7200)  # two hours on, the next press reaches the hub only as the broker's resend
    hub.pipeline.handle(TOPIC, STUCK, 1, False, True)
    active = [a for a in hub.store.alerts() if a.status == "active"]
    assert len(active) == 1 and active[0].id != alert.id, "the press was taken for the old one's copy"
    assert active[0].raised_at == PRESS + 7200
    hub.pipeline.handle(TOPIC, STUCK, 1, False, True)  # and its own copy counts once
    assert [a.count for a in hub.store.alerts() if a.status == "active"] == [1]
    hub.store.close()


def test_a_resent_press_held_through_a_store_failure_is_retried_as_resent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review: the hub's retry dropped the broker's DUP flag. A press the store refused is held
    (its PUBACK too); after a reconnect the broker sends it again with DUP, which queues behind
    the held one (``MessageDeferred``). Retried as a new message, it was a second press."""
    hub = hub_at(tmp_path, PRESS)
    original = hub.store.upsert_alert
    full = [True]

    def upsert(*args: Any, **kwargs: Any) -> Any:
        if full[0]:
            raise sqlite3.OperationalError("database or disk is full")
        return original(*args, **kwargs)

    monkeypatch.setattr(hub.store, "upsert_alert", upsert)
    for dup in (False, True):
        with pytest.raises(Exception) as caught:
            hub._on_message(TOPIC, SOS, 1, False, dup)
        hub.redelivery.hold(Unhandled(TOPIC, SOS, 1, False, None, caught.value, dup))
    assert type(caught.value).__name__ == "MessageDeferred"
    full[0] = False
    assert hub.redelivery.retry_now() == 2
    (alert,) = hub.store.alerts()
    assert alert.count == 1 and reminders(hub) == []
    hub.close()
