"""Finding 1: a worker reply is proven by the person's key, not inferred from the topic.

The attack (issue 11): with any broker credential, publish ``call_back`` then ``false_alarm``
on the command supervisor's reply topic → the SOS case was closed as a false alarm. Now an
unsigned, mis-signed, stale, replayed or retained reply is quarantined and never applied.
These tests drive the hub's MQTT callback directly (no broker): the broker side has its own
tests (test_broker_acl.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from hub.app import Hub
from hub.casework.replies import canonical_reply, sign_reply
from hub.casework.reply_keys import ReplyKeys
from hub.cli import main
from hub.clock import ManualClock
from tests.helpers import COMMUNITY, REGISTRY, SOS_BUTTON, hub_settings, issue_reply_key, signed_reply
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

PRESS = 1_795_371_180.0  # 2026-11-23 02:13:00 Asia/Shanghai: the night shift
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
WORKERS = f"linli/{COMMUNITY}/workers"
DOCS = Path(__file__).parents[1] / "docs" / "topics.md"


def make_hub(tmp_path: Path, clock: ManualClock) -> Hub:
    # Built, not started: the MQTT callback is called directly; no broker is involved.
    return Hub(settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=clock)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=PRESS)


@pytest.fixture
def hub(tmp_path: Path, clock: ManualClock) -> Iterator[Hub]:
    issue_reply_key(hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), "w-night")
    issue_reply_key(hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), "boss")
    hub = make_hub(tmp_path, clock)
    hub._on_message(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1, False)
    try:
        yield hub
    finally:
        hub.store.close()


def case_of(hub: Hub) -> str:
    (case_id,) = hub.cases.case_ids()
    return case_id


def state(hub: Hub) -> str:
    case = hub.cases.load(case_of(hub))
    assert case is not None
    return case.state.value


def key(hub: Hub, person: str) -> bytes:
    found = hub.reply_keys.key_for(person)
    assert found is not None
    return found


def reply(hub: Hub, person: str, payload: bytes, *, retain: bool = False) -> None:
    hub._on_message(f"{WORKERS}/{person}/replies", payload, 1, retain)


def test_the_attack_unsigned_false_alarm_on_the_supervisors_topic_is_not_applied(hub: Hub) -> None:
    case_id = case_of(hub)
    for action, note in (("call_back", "x"), ("false_alarm", "x")):
        reply(hub, "boss", orjson.dumps({"case_id": case_id, "action": action, "note": note}))
    assert state(hub) == "dispatched"
    assert hub.quarantine.counts["reply_unauthenticated"] == 2
    assert [e.action.value for e in hub.cases.timeline(case_id)] == ["file", "dispatch"]


def test_a_signed_reply_is_applied(hub: Hub, clock: ManualClock) -> None:
    payload = signed_reply(
        key(hub, "w-night"), person="w-night", case_id=case_of(hub), action="accept", ts=clock.now()
    )
    reply(hub, "w-night", payload)
    assert state(hub) == "accepted" and not hub.quarantine.counts


@pytest.mark.parametrize("forgery", ["other_key", "other_topic", "tampered_note", "bad_sig", "no_key"])
def test_forged_replies_are_refused(hub: Hub, clock: ManualClock, forgery: str) -> None:
    case_id = case_of(hub)
    night = key(hub, "w-night")
    if forgery == "other_key":  # the night worker's key on the supervisor's topic, signed as boss
        person, payload = (
            "boss",
            signed_reply(night, person="boss", case_id=case_id, action="accept", ts=clock.now()),
        )
    elif forgery == "other_topic":  # a genuine reply of the night worker, copied to boss's topic
        person, payload = (
            "boss",
            signed_reply(night, person="w-night", case_id=case_id, action="accept", ts=clock.now()),
        )
    elif forgery == "tampered_note":
        body = orjson.loads(
            signed_reply(night, person="w-night", case_id=case_id, action="note", note="ok", ts=clock.now())
        )
        person, payload = "w-night", orjson.dumps({**body, "note": "false alarm, close it"})
    elif forgery == "bad_sig":
        body = orjson.loads(
            signed_reply(night, person="w-night", case_id=case_id, action="accept", ts=clock.now())
        )
        person, payload = "w-night", orjson.dumps({**body, "sig": "0" * 64})
    else:  # a roster person who was never issued a key
        person = "w-day"
        payload = signed_reply(b"guessed", person="w-day", case_id=case_id, action="accept", ts=clock.now())
    reply(hub, person, payload)
    assert state(hub) == "dispatched"
    assert hub.quarantine.counts == {"reply_unauthenticated": 1}


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
def test_a_timestamp_outside_the_window_is_refused(hub: Hub, clock: ManualClock, offset: float) -> None:
    payload = signed_reply(
        key(hub, "w-night"), person="w-night", case_id=case_of(hub), action="accept", ts=clock.now() + offset
    )
    reply(hub, "w-night", payload)
    assert state(hub) == "dispatched" and hub.quarantine.counts == {"reply_unauthenticated": 1}


def test_a_replayed_reply_is_refused_also_after_a_restart(
    tmp_path: Path, hub: Hub, clock: ManualClock
) -> None:
    case_id = case_of(hub)
    night = key(hub, "w-night")
    accept = signed_reply(night, person="w-night", case_id=case_id, action="accept", ts=clock.now())
    note = signed_reply(
        night, person="w-night", case_id=case_id, action="note", note="on my way", ts=clock.now()
    )
    reply(hub, "w-night", accept)
    reply(hub, "w-night", note)
    reply(hub, "w-night", note)  # captured and replayed
    assert hub.quarantine.counts == {"reply_replayed": 1}
    hub.store.close()
    clock.advance(60)
    again = make_hub(tmp_path, clock)  # a restart does not reopen replays
    try:
        reply(again, "w-night", note)
        assert again.quarantine.counts == {"reply_replayed": 1}
        timeline = [e.action.value for e in again.cases.timeline(case_id)]
        assert timeline.count("note") == 1
    finally:
        again.store.close()


def test_nonces_are_pruned_once_outside_the_window(hub: Hub, clock: ManualClock) -> None:
    night = key(hub, "w-night")
    case_id = case_of(hub)
    reply(
        hub,
        "w-night",
        signed_reply(night, person="w-night", case_id=case_id, action="accept", ts=clock.now()),
    )
    assert hub.replies._nonces.count() == 1
    clock.advance(400)
    later = signed_reply(night, person="w-night", case_id=case_id, action="note", note="n", ts=clock.now())
    reply(hub, "w-night", later)
    assert hub.replies._nonces.count() == 1, "the first nonce left the window and was pruned"


def test_a_retained_reply_is_ignored(hub: Hub, clock: ManualClock) -> None:
    payload = signed_reply(
        key(hub, "w-night"), person="w-night", case_id=case_of(hub), action="accept", ts=clock.now()
    )
    reply(hub, "w-night", payload, retain=True)
    assert state(hub) == "dispatched" and hub.quarantine.counts == {"reply_retained": 1}


def test_a_rotated_key_takes_effect_without_a_restart(tmp_path: Path, hub: Hub, clock: ManualClock) -> None:
    old = key(hub, "w-night")
    issue_reply_key(hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), "w-night")
    payload = signed_reply(old, person="w-night", case_id=case_of(hub), action="accept", ts=clock.now())
    reply(hub, "w-night", payload)
    assert state(hub) == "dispatched" and hub.quarantine.counts == {"reply_unauthenticated": 1}


def test_the_worked_example_in_the_docs_verifies() -> None:
    """docs/topics.md's example: the hub's signer gives the documented canonical text and sig."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("### Worked example") :]
    values = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|$", section, flags=re.MULTILINE))
    canonical = canonical_reply(
        case_id=values["case_id"],
        action=values["action"],
        ts=int(values["ts"]),
        nonce=values["nonce"],
        person=values["person"],
        note=values["note"],
        data={},
    ).decode()
    assert f"```text\n{canonical}\n```" in section
    sig = sign_reply(
        values["key"].encode(),
        case_id=values["case_id"],
        action=values["action"],
        ts=int(values["ts"]),
        nonce=values["nonce"],
        person=values["person"],
        note=values["note"],
    )
    assert f'"sig": "{sig}"' in section


def test_linli_reply_key_issues_rotates_and_revokes(tmp_path: Path) -> None:
    registry = tmp_path / "community.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    assert runner.invoke(main, ["community", "import", str(registry), *data]).exit_code == 0
    first = runner.invoke(main, ["reply-key", "issue", "--person", "w-night", *data])
    assert first.exit_code == 0, first.output
    keys = ReplyKeys(path=tmp_path / "data" / "reply-keys.yaml")
    issued = keys.key_for("w-night")
    assert issued is not None and issued.decode() in first.output
    assert (tmp_path / "data" / "reply-keys.yaml").stat().st_mode & 0o077 == 0
    assert runner.invoke(main, ["reply-key", "issue", "--person", "w-night", *data]).exit_code == 0
    assert keys.key_for("w-night") not in (None, issued), "issuing again rotates"
    assert runner.invoke(main, ["reply-key", "issue", "--person", "nobody", *data]).exit_code != 0
    listed = runner.invoke(main, ["reply-key", "list", *data]).output
    assert "w-night\tkey issued" in listed and "w-day\tNO KEY" in listed
    assert runner.invoke(main, ["reply-key", "revoke", "--person", "w-night", *data]).exit_code == 0
    assert keys.key_for("w-night") is None
