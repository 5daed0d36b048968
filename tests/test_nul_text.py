"""Text with U+0000 from outside never fails a store write or an HTTP request.

PostgreSQL's text cannot hold NUL (psycopg raises ``DataError``); SQLite's can. Found in review:
a NUL in a case id answered HTTP 500 on PostgreSQL, and a NUL in an unknown device's id failed
the unknown-devices write, so the message was not handled. Both engines, a real hub.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from hub.app import Hub
from hub.broker import EmbeddedBroker
from hub.clock import ManualClock
from hub.records import Role
from hub.web.care import visit_id
from tests.helpers import COMMUNITY, SOS_BUTTON, hub_settings
from tests.support.servers import Broker
from tests.test_web_authz import NIGHT, secret, settings_for

PRESS = 1_795_371_180.0


def test_nul_in_a_device_id_or_a_payload_is_handled_on_either_engine(tmp_path: Path, store_url: str) -> None:
    settings = hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p"), store={"url": store_url})
    hub = Hub(settings=settings, clock=ManualClock(start=PRESS))
    try:
        press = {"v": 1, "kind": "sos_press", "value": "sin\x00gle", "attrs": {"press": "a\x00b"}}
        hub._on_message(f"linli/{COMMUNITY}/devices/{SOS_BUTTON}/events", orjson.dumps(press), 1, False)
        assert len(hub.cases.case_ids()) == 1
        hub._on_message("zigbee2mqtt/ab\x00c", b'{"action": "emergency"}', 2, False)
        hub._on_message("zigbee2mqtt/\x00", b"not json", 3, False)
        assert hub.quarantine.flush() == 2
        assert {r.reason for r in hub.store.quarantine()} == {"unknown_device", "malformed_json"}
        assert [d.id.replace("\ufffd", "\x00") for d in hub.store.unassigned()] == ["ab\x00c"]
    finally:
        hub.store.close()


async def test_nul_in_an_id_or_query_is_never_a_server_error(tmp_path: Path, store_url: str) -> None:
    embedded = EmbeddedBroker(host="127.0.0.1", port=0, users={"linli": "pw"})
    await embedded.start()
    broker = Broker("127.0.0.1", embedded.port, "linli", "pw")
    answers: dict[str, int] = {}
    try:
        settings = settings_for(tmp_path, broker, store={"url": store_url})
        async with Hub(settings=settings, clock=ManualClock(start=NIGHT)) as hub:
            headers = {"Authorization": f"Bearer {secret(Role.GRID_WORKER)}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.http_port}", headers=headers) as c:
                for method, path in [
                    ("GET", "/api/cases/a%00b"),
                    ("POST", "/api/cases/a%00b/note"),
                    ("GET", "/cases/a%00b"),
                    ("GET", "/api/cases?assignee=a%00b"),
                    ("GET", "/api/cases?grid=a%00b"),
                    ("POST", f"/api/visits/{visit_id(chr(0) + 'x/visit/1')}/visited_well"),
                ]:
                    r = await c.request(method, path, json={"note": "x"} if method == "POST" else None)
                    answers[path] = r.status_code
    finally:
        await embedded.stop()
    assert not [code for code in answers.values() if code >= 500], answers
