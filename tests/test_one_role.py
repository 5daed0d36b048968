"""One person, one role, across the district.

A person acts with one role over every grid of his roster entries. Found in review: ``p``, duty
officer of community A and volunteer for one grid of community B, acted with the duty officer's
desk over B too and closed B's SOS case as a false alarm with a signed MQTT reply. The community
file, an import next to held communities and the registry refuse such rosters; a store that
already holds one still starts, logs it, and the person acts only where his first role is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.app import Hub
from hub.casework.access import Actor
from hub.clock import ManualClock
from hub.community.files import parse_yaml
from hub.community.model import Community
from hub.community.registry import Registry
from hub.community.roster import Role
from hub.config import load_settings
from hub.errors import RegistryError
from hub.storage.store import Store
from tests.helpers import issue_reply_key, signed_reply
from tests.support.samples import sample

A, B = "110105001001", "110105001002"
PRESS = 1_795_371_180.0
ALWAYS = [{"start": "00:00", "end": "00:00"}]


def community(code: str, people: list[tuple[str, str, str]], devices: tuple[str, ...] = ()) -> dict[str, Any]:
    grids = [f"{code}001", f"{code}002"]
    return {
        "code": code,
        "name": f"社区{code[-1]}",
        "grids": [{"code": g, "name": g[-3:]} for g in grids],
        "people": [
            {"id": p, "name": "张三", "role": role, "grids": [f"{code}{grid}"], "shifts": ALWAYS}
            for p, role, grid in people
        ],
        "devices": [{"id": d, "kind": "sos_button", "model": "TS0215A", "grid": grids[0]} for d in devices],
    }


def load(*communities: dict[str, Any]) -> tuple[Community, ...]:
    return parse_yaml(orjson.dumps({"communities": list(communities)}).decode(), file="district.yaml")


TWO_ROLES = (
    community(A, [("p", "duty_officer", "001")]),
    community(B, [("p", "volunteer", "002"), ("w", "grid_worker", "001")], devices=("btn-b",)),
)
CLASH = f"person p is duty_officer in community {A} and volunteer in {B}"


def test_a_file_giving_one_person_two_roles_is_refused_and_one_role_twice_is_not() -> None:
    with pytest.raises(RegistryError, match=CLASH):
        load(*TWO_ROLES)
    # A street's staff on several communities' rosters with one role is fine.
    both = load(community(A, [("p", "duty_officer", "001")]), community(B, [("p", "duty_officer", "002")]))
    assert Registry(communities=both).role_clashes == []


def test_an_import_next_to_a_held_community_is_refused(tmp_path: Path) -> None:
    store = Store(path=tmp_path / "linli.sqlite3")
    try:
        store.save_communities(load(TWO_ROLES[0]), at=1.0)
        with pytest.raises(RegistryError, match=CLASH) as raised:
            store.save_communities(load(TWO_ROLES[1]), at=2.0, source="b.yaml")
        assert str(raised.value).startswith("b.yaml")
        assert [c.code for c in store.communities()] == [A]
    finally:
        store.close()


def _held(tmp_path: Path) -> Path:
    """A store holding both communities as an older Linli saved them (no check across them)."""
    data = tmp_path / "data"
    data.mkdir()
    store = Store(path=data / "linli.sqlite3")
    for at, doc in enumerate(TWO_ROLES):
        (parsed,) = load(doc)
        with store.transaction() as db:
            db.execute(
                "INSERT INTO communities (code, doc, updated_at) VALUES (?, ?, ?)",
                (parsed.code, orjson.dumps(parsed.model_dump(mode="json")), float(at)),
            )
    store.close()
    return data


def test_on_a_store_that_holds_two_roles_he_acts_only_where_his_first_role_is(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _held(tmp_path)
    settings = load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(data),
            "mqtt": {"url": "mqtt://u:p@127.0.0.1:1", "client_id": "t"},
            "http": {"host": "127.0.0.1", "port": 0},
        },
    )
    key = issue_reply_key(settings, "p")
    with caplog.at_level(logging.ERROR, logger="hub.app"):
        hub = Hub(settings=settings, clock=ManualClock(start=PRESS))
    try:
        assert any(CLASH in r.getMessage() for r in caplog.records)
        reach = hub.casework.reach(Actor("p", Role.DUTY_OFFICER))
        assert reach.communities == {A} and reach.grids == {f"{A}001"}
        _, press = sample("zigbee2mqtt", "tuya_ts0215a_sos_emergency")
        hub._on_message("zigbee2mqtt/btn-b", press, 1, False)
        (case_id,) = hub.cases.case_ids()
        reply = signed_reply(
            key, person="p", case_id=case_id, action="false_alarm", data={"callback_at": PRESS}, ts=PRESS
        )
        hub._on_message(f"linli/{B}/workers/p/replies", reply, 1, False)
        case = hub.cases.load(case_id)
        assert case is not None and case.state.value == "dispatched" and case.resolution is None
    finally:
        hub.store.close()
