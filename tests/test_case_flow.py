"""A full SOS from press to 结案 with simulated time, through MQTT, the API and the phone page's calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import Hub
from hub.cases.model import CaseAction, Channel
from hub.clock import ManualClock
from hub.config import ApiToken
from hub.health.metrics import render
from hub.web.api import token_hash
from tests.helpers import (
    COMMUNITY,
    REGISTRY,
    SOS_BUTTON,
    TOKEN,
    WORKER_TOKEN,
    Phone,
    eventually,
    hub_settings,
    issue_reply_key,
    publisher,
    signed_reply,
)
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai: the night shift
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
WORKERS = f"linli/{COMMUNITY}/workers"


@pytest.fixture
async def setup(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> AsyncIterator[tuple[Hub, ManualClock, Phone]]:
    """A hub on each store engine (``store_url``): the SOS path must not depend on which runs."""
    clock = ManualClock(start=PRESS)
    phone = Phone(mosquitto_broker)
    await phone.start(f"{WORKERS}/+/notifications", "linli/command-centre/notifications")
    settings = hub_settings(tmp_path, mosquitto_broker, store={"url": store_url})
    issue_reply_key(settings, "w-night")
    async with Hub(settings=settings, clock=clock) as hub:
        yield hub, clock, phone
    await phone.stop()


async def call(
    hub: Hub, method: str, path: str, token: str = TOKEN, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if token == WORKER_TOKEN:
        headers["X-Linli-Channel"] = "phone"  # as the phone page sends it
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.request(method, f"http://127.0.0.1:{hub.http_port}{path}", json=body) as response,
    ):
        return response.status, await response.json()


def steps_for(phone: Phone, person: str) -> list[str]:
    return [body["step"] for body in phone.on(f"{WORKERS}/{person}/notifications")]


async def test_sos_from_press_to_closed_with_escalation(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker
) -> None:
    hub, clock, phone = setup
    gateway = await publisher(mosquitto_broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    await eventually(lambda: steps_for(phone, "w-night"), what="the night worker's notification")
    (case_id,) = hub.cases.case_ids()

    # 02:14:10 — nobody accepted within 60 s: the grid leader is told (the next grid worker is
    # off duty), and the accept stage is red, so it is supervised (督办).
    clock.advance(70)
    hub.casework.tick()
    await eventually(lambda: steps_for(phone, "g-leader"), what="the grid leader's escalation")
    assert phone.on(f"{WORKERS}/g-leader/notifications")[0]["type"] == "case.escalate"
    status, case = await call(hub, "GET", f"/api/cases/{case_id}")
    assert [s["light"] for s in case["sla"] if s["stage"] == "accept"] == ["red"]

    # 02:15 — the night worker accepts from the app, over MQTT.
    clock.set(PRESS + 120)
    key = hub.reply_keys.key_for("w-night")
    assert key is not None
    reply = signed_reply(key, person="w-night", case_id=case_id, action="accept", ts=clock.now())
    gateway.publish(f"{WORKERS}/w-night/replies", reply, qos=1)
    await eventually(lambda: hub.cases.load(case_id).state.value == "accepted", what="acceptance")  # type: ignore[union-attr]

    # 02:16 — no more escalation once accepted: the supervisor's 3-minute step never comes.
    clock.set(PRESS + 200)
    hub.casework.tick()
    assert not steps_for(phone, "boss")

    # 02:24 — on site, from the phone page; a report without a note is refused.
    clock.set(PRESS + 660)
    status, _ = await call(hub, "POST", f"/api/cases/{case_id}/arrive", WORKER_TOKEN, {})
    assert status == 200
    status, refused = await call(hub, "POST", f"/api/cases/{case_id}/handle", WORKER_TOKEN, {"note": ""})
    assert status == 409 and refused["error"] == "invalid_transition"
    clock.set(PRESS + 900)
    status, _ = await call(
        hub,
        "POST",
        f"/api/cases/{case_id}/handle",
        WORKER_TOKEN,
        {"note": "老人跌倒,已扶起,无外伤,已通知儿子"},
    )
    assert status == 200
    # The worker may not verify their own work; the command centre does, then closes.
    status, _ = await call(hub, "POST", f"/api/cases/{case_id}/verify", WORKER_TOKEN, {})
    assert status == 403
    clock.set(PRESS + 1500)
    assert (await call(hub, "POST", f"/api/cases/{case_id}/verify", TOKEN, {"data": {"passed": True}}))[
        0
    ] == 200
    clock.set(PRESS + 1560)
    status, closed = await call(hub, "POST", f"/api/cases/{case_id}/close", TOKEN, {})
    assert status == 200 and closed["state"] == "closed"

    status, detail = await call(hub, "GET", f"/api/cases/{case_id}")
    timeline = [(e["action"], e["to_state"], e["actor"], e["channel"], e["ts"]) for e in detail["timeline"]]
    assert timeline == [
        ("file", "filed", "system", "system", "2026-11-22T18:13:00.000Z"),
        ("dispatch", "dispatched", "system", "system", "2026-11-22T18:13:00.000Z"),
        ("supervise", "dispatched", "system", "system", "2026-11-22T18:14:10.000Z"),
        ("accept", "accepted", "w-night", "mqtt", "2026-11-22T18:15:00.000Z"),
        ("arrive", "on_site", "w-night", "phone_page", "2026-11-22T18:24:00.000Z"),
        ("handle", "handled", "w-night", "phone_page", "2026-11-22T18:28:00.000Z"),
        ("verify", "verified", "t", "console", "2026-11-22T18:38:00.000Z"),
        ("close", "closed", "t", "console", "2026-11-22T18:39:00.000Z"),
    ]
    assert detail["resident"]["emergency_contacts"][0]["phone"] == "13987654321"

    status, kpis = await call(hub, "GET", f"/api/kpis?from={PRESS - 3600}&to={PRESS + 86400}")
    assert kpis["overall"]["due"] == 1 and kpis["overall"]["closure_rate"] == 1.0
    assert kpis["overall"]["accept_p50_s"] == 120.0 and kpis["overall"]["on_site_p50_s"] == 660.0
    assert kpis["by_worker"]["w-night"]["closed"] == 1
    await gateway.disconnect()


async def test_worker_sees_only_own_cases_and_no_one_elses_elder(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker
) -> None:
    hub, _clock, _phone = setup
    gateway = await publisher(mosquitto_broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    gateway.publish("zigbee2mqtt/stranger-button", SOS, qos=1)  # unassigned → command centre
    await eventually(lambda: len(hub.cases.case_ids()) == 2, what="two cases")
    status, mine = await call(hub, "GET", "/api/cases?mine=1", WORKER_TOKEN)
    assert status == 200 and [c["subject"] for c in mine] == [SOS_BUTTON]
    other = next(i for i in hub.cases.case_ids() if i != mine[0]["id"])
    assert (await call(hub, "GET", f"/api/cases/{other}", WORKER_TOKEN))[0] == 404
    # Acting on it is the same 404: no oracle for which ids are cases in other grids.
    assert (await call(hub, "POST", f"/api/cases/{other}/accept", WORKER_TOKEN, {}))[0] == 404
    status, everything = await call(hub, "GET", "/api/cases", TOKEN)
    assert len(everything) == 2
    await gateway.disconnect()


async def test_sos_false_alarm_needs_a_recorded_call_back(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker
) -> None:
    hub, clock, _phone = setup
    gateway = await publisher(mosquitto_broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    await eventually(hub.cases.case_ids, what="the case")
    (case_id,) = hub.cases.case_ids()
    status, refused = await call(hub, "POST", f"/api/cases/{case_id}/false_alarm", TOKEN, {"note": "误按"})
    assert status == 409 and "call" in refused["message"].lower()
    clock.advance(40)
    assert (
        await call(
            hub,
            "POST",
            f"/api/cases/{case_id}/call_back",
            TOKEN,
            {"note": "已回拨,老人说误按", "data": {"callback_at": PRESS + 40}},
        )
    )[0] == 200
    status, done = await call(
        hub, "POST", f"/api/cases/{case_id}/false_alarm", TOKEN, {"note": "误按,已回拨确认"}
    )
    assert status == 200 and done["state"] == "closed" and done["resolution"] == "false_alarm"
    await gateway.disconnect()


async def test_the_next_press_after_a_closed_case_files_a_new_case_and_tells_the_worker(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker
) -> None:
    """Found in review: an SOS alert is never cleared by a sensor, and closing its case did not
    resolve it, so the elder's next press landed on the same active alert, opened no case and
    told nobody: one handled press (here the everyday false alarm) silenced the button."""
    hub, clock, phone = setup
    gateway = await publisher(mosquitto_broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    await eventually(hub.cases.case_ids, what="the first case")
    (first,) = hub.cases.case_ids()
    clock.advance(40)
    body = {"note": "已回拨,老人说误按", "data": {"callback_at": PRESS + 40}}
    assert (await call(hub, "POST", f"/api/cases/{first}/call_back", TOKEN, body))[0] == 200
    status, done = await call(hub, "POST", f"/api/cases/{first}/false_alarm", TOKEN, {"note": "误按"})
    assert status == 200 and done["state"] == "closed"
    clock.advance(2 * 86400)  # two days later, a real emergency
    told = len(phone.on(f"{WORKERS}/w-night/notifications"))
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    (second,) = await eventually(
        lambda: [c for c in hub.cases.case_ids() if c != first], what="a new case for the second press"
    )
    assert hub.casework.load(second).state.value == "dispatched"
    await eventually(
        lambda: len(phone.on(f"{WORKERS}/w-night/notifications")) > told, what="the night worker told"
    )
    await gateway.disconnect()


async def test_an_automatic_supervise_tells_the_handler_and_the_command_centre(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker
) -> None:
    """Found in review: a red stage's 督办 was recorded and told nobody (the escalation plan has
    no steps past 受理): an SOS whose handler arrived and never reported went red unheard."""
    hub, clock, phone = setup
    gateway = await publisher(mosquitto_broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    await eventually(hub.cases.case_ids, what="the case")
    (case_id,) = hub.cases.case_ids()
    for action in (CaseAction.ACCEPT, CaseAction.ARRIVE):
        clock.advance(60)
        hub.casework._act(
            hub.cases.load(case_id), action, actor="w-night", channel=Channel.PHONE_PAGE, note="", data={}
        )
    for _ in range(36):  # three hours with no report: the handle stage (1 h) and the case (2 h) go red
        clock.advance(300)
        hub.casework.tick()
    case = hub.cases.load(case_id)
    assert {s.stage.value for s in case.supervisions} >= {"handle", "case"}

    def supervised(topic: str) -> list[str]:
        return [b["step"] for b in phone.on(topic) if b.get("type") == "case.supervise"]

    await eventually(
        lambda: len(supervised(f"{WORKERS}/w-night/notifications")) >= 2, what="the handler told"
    )
    await eventually(lambda: supervised("linli/command-centre/notifications"), what="the command centre told")
    await gateway.disconnect()


async def test_a_case_that_failed_to_open_is_opened_by_the_casework_loop(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, _clock, phone = setup
    real_open = hub.casework.open_from_alert
    failures = []

    def flaky(alert: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(alert.id)
            raise RuntimeError("database is locked")  # a transient failure after the alert's commit
        return real_open(alert, **kwargs)

    monkeypatch.setattr(hub.casework, "open_from_alert", flaky)
    gateway = await publisher(mosquitto_broker)
    gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
    await eventually(lambda: failures, what="the failed open")
    assert hub.store.alerts(), "the SOS alert itself is recorded"
    await eventually(lambda: steps_for(phone, "w-night"), within=10, what="the case, opened on retry")
    (case_id,) = hub.cases.case_ids()
    assert hub.cases.load(case_id).alert_id == failures[0]  # type: ignore[union-attr]
    await gateway.disconnect()


async def test_replies_that_cannot_be_applied_leave_a_quarantine_record(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker
) -> None:
    hub, clock, _phone = setup
    gateway = await publisher(mosquitto_broker)
    gateway.publish(f"{WORKERS}/w-night/replies", b"{not json", qos=1)
    key = hub.reply_keys.key_for("w-night")
    assert key is not None
    reply = signed_reply(key, person="w-night", case_id="nope", action="accept", ts=clock.now())
    gateway.publish(f"{WORKERS}/w-night/replies", reply, qos=1)
    await eventually(lambda: hub.replies.handled == 2, what="both replies handled")
    assert hub.quarantine.counts["bad_reply"] == 1 and hub.quarantine.counts["reply_refused"] == 1
    hub.quarantine.flush()
    reasons = {(r.topic, r.reason) for r in hub.store.quarantine()}
    assert (f"{WORKERS}/w-night/replies", "reply_refused") in reasons
    await gateway.disconnect()


async def test_the_phone_list_holds_cases_escalated_to_the_person_not_only_his_own(
    tmp_path: Path, mosquitto_broker: Broker, store_url: str
) -> None:
    """Issue 15: the phone page (``?mine=told``) lists what is assigned *or escalated* to its user."""
    leader = "leader-token-not-a-secret"
    clock = ManualClock(start=PRESS)
    settings = hub_settings(tmp_path, mosquitto_broker, store={"url": store_url})
    tokens = [
        *settings.api_tokens,
        ApiToken(name="lead", role="grid_leader", person="g-leader", sha256=token_hash(leader)),
    ]
    settings = hub_settings(tmp_path, mosquitto_broker, store={"url": store_url}, api_tokens=tokens)
    async with Hub(settings=settings, clock=clock) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
        await eventually(hub.cases.case_ids, what="the SOS case")
        (case_id,) = hub.cases.case_ids()
        assert (await call(hub, "GET", "/api/cases?mine=told", leader))[1] == [], "not told yet"
        clock.advance(70)  # nobody accepted within 60 s: escalated to the grid leader
        hub.casework.tick()
        status, told = await call(hub, "GET", "/api/cases?mine=told", leader)
        assert status == 200 and [c["id"] for c in told] == [case_id]
        assert (await call(hub, "GET", "/api/cases?mine=1", leader))[1] == [], "still the night worker's"
        status, own = await call(hub, "GET", "/api/cases?mine=told", WORKER_TOKEN)
        assert [c["id"] for c in own] == [case_id]
        await gateway.disconnect()


#: Never connected: the roster-gap test drives the hub's stages by hand.
NO_BROKER = Broker("127.0.0.1", 9, "linli", "unused")


def test_a_roster_gap_tells_the_command_centre_once_not_twice(tmp_path: Path) -> None:
    """Nobody of the grid on duty at 02:13: the night shift ends at 01:00, the leader works days.

    The case goes to the command centre as its assignee, and the SOS step also tells the
    command centre because the elder has guardians: one notice, not two with different ids
    (the operators would see the same press twice, and the fault suite counts it a duplicate).
    """
    registry = tmp_path / "gap.yaml"
    night = 'shifts: [{start: "20:00", end: "08:00"}]}'
    leader = 'role: grid_leader, grids: ["110105001001001"], shifts: [{start: "00:00", end: "00:00"}]'
    assert night in REGISTRY and leader in REGISTRY
    gap = REGISTRY.replace(night, 'shifts: [{start: "20:00", end: "01:00"}]}').replace(
        leader, leader.replace('"00:00", end: "00:00"', '"08:00", end: "20:00"')
    )
    registry.write_text(gap, encoding="utf-8")
    settings = hub_settings(tmp_path, NO_BROKER, community_file=str(registry))
    hub = Hub(settings=settings, clock=ManualClock(start=PRESS))
    try:
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        (case_id,) = hub.cases.case_ids()
        case = hub.cases.load(case_id)
        assert case is not None and case.assignee == "command-centre"
        recipients = [
            recipient
            for (recipient,) in hub.store.execute(
                "SELECT recipient FROM notifications WHERE case_id = ?", (case_id,)
            ).fetchall()
        ]
        assert sorted(recipients) == ["command-centre", "duty"]
    finally:
        hub.close()


async def test_an_alert_that_cannot_become_a_case_is_shown_not_only_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub dies between the alert's commit and the case's (the casework loop opens the case
    later), and the alert's row cannot be read back (a corrupted row). Nobody was told of this
    SOS, and the casework loop only logged it every round: no metric, no quarantine record,
    nothing on the console. A poisoned *case* has all three."""
    hub = Hub(settings=hub_settings(tmp_path, NO_BROKER), clock=ManualClock(start=PRESS))
    try:
        crashed = []

        def crash(alert: Any, **kwargs: Any) -> None:
            crashed.append(alert.id)
            raise RuntimeError("kill -9 between the alert's commit and the case's")

        monkeypatch.setattr(hub.casework, "open_from_alert", crash)
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
        monkeypatch.undo()
        (alert_id,) = crashed
        hub.store.execute("UPDATE alerts SET trace = ? WHERE id = ?", ("{not json", alert_id))
        assert hub.casework.reconcile() == 0
        assert hub.cases.case_ids() == []
        lines = set(render(hub.metrics()).splitlines())
        assert "linli_alerts_without_case 1" in lines
        assert hub.quarantine.counts.get("case_not_opened") == 1
        warnings = hub.readiness().warnings
        assert any(f"alert {alert_id}" in w for w in warnings), warnings
        hub.store.execute("UPDATE alerts SET trace = ? WHERE id = ?", ('{"occurrences": []}', alert_id))
        assert hub.casework.reconcile() == 1  # repaired: the case opens, the warning goes
        assert "linli_alerts_without_case 0" in set(render(hub.metrics()).splitlines())
        assert not any("alert" in w for w in hub.readiness().warnings)
    finally:
        hub.close()


async def test_a_new_alerts_case_is_filed_without_reading_what_the_ingest_has_in_hand(
    setup: tuple[Hub, ManualClock, Phone], mosquitto_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case of an alert created by the message being handled is filed without asking the
    store whether the alert has a case (no case can name it yet: the index
    ``cases_one_open_per_alert`` stands behind that), which steps it sent (none) or the alert
    itself (in hand): three round trips the event loop waited for on PostgreSQL, per case."""
    hub, _clock, phone = setup
    reads: list[str] = []
    for owner, name in (
        (hub.cases, "open_for_alert"),
        (hub.cases, "sent_keys"),
        (hub.store, "alert"),
    ):
        original = getattr(owner, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            reads.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
    (case_id,) = hub.cases.case_ids()
    case = hub.cases.load(case_id)
    assert case is not None and case.assignee == "w-night"
    assert reads == []
    await eventually(lambda: steps_for(phone, "w-night"), what="the worker's notice")
    # A case opened later for an alert that may have one (the casework loop's reconcile) still asks.
    assert hub.casework.open_from_alert(hub.store.alerts()[0]) is None
    assert reads[0] == "open_for_alert"
