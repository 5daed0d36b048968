"""PostgreSQL that stops answering (a partition, a stopped or hung server) does not stop the hub.

Found in review: store calls run on the event loop, ``statement_timeout`` is the server's, and
the client set no bound, so the loop waited as long as the partition lasted (40 s): /healthz,
MQTT keepalives and every escalation with it. Now a watchdog cuts a call that waited past
``CALL_LIMIT_S`` (2 s here, 12 s as shipped), the message is held, and after the partition the
press is filed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.errors import StoreError
from hub.storage import postgres
from tests.helpers import SOS_BUTTON, eventually, hub_settings, publisher
from tests.support.stall_proxy import StallProxy
from tests.test_health import PRESS, SOS, wait_ready

PARTITION_S = 8.0


async def test_a_server_that_stops_answering_is_cut_off_and_the_press_waits(
    tmp_path: Path,
    mosquitto_broker: Any,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(postgres, "CALL_LIMIT_S", 2.0)
    caplog.set_level(logging.ERROR, logger="hub.storage.postgres")
    parts = urlsplit(postgres_url)
    proxy = StallProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    via = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    healed = threading.Timer(PARTITION_S, proxy.stalled.clear)
    try:
        settings = hub_settings(tmp_path, mosquitto_broker, store={"url": via})
        async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
            await wait_ready(hub, True)
            gateway = await publisher(mosquitto_broker)
            proxy.stalled.set()
            healed.start()
            stalled_at = time.monotonic()
            gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
            await asyncio.sleep(0.5)  # returns only when the event loop runs again
            blocked = time.monotonic() - stalled_at
            assert blocked < PARTITION_S - 2, f"the event loop waited {blocked:.1f} s for a silent server"
            assert any("did not answer" in r.getMessage() for r in caplog.records)

            def filed() -> bool:
                try:
                    return len(hub.store.alerts()) == 1
                except StoreError:  # still reconnecting: this read is refused like any other
                    return False

            await eventually(filed, within=30, what="the press, after the partition")
            await gateway.disconnect()
    finally:
        healed.cancel()
        proxy.stalled.clear()
        proxy.close()


@pytest.mark.parametrize("what", ["execute", "check_writable"])
def test_every_call_into_a_silent_server_is_cut(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    """Found in review: check_writable (readiness) went round the watchdog."""
    monkeypatch.setattr(postgres, "CALL_LIMIT_S", 1.0)
    parts = urlsplit(postgres_url)
    proxy = StallProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    engine = postgres.PostgresEngine(
        url=urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    )
    try:
        proxy.stalled.set()
        call = (lambda: engine.execute("SELECT 1")) if what == "execute" else engine.check_writable
        started = time.monotonic()
        with pytest.raises((psycopg.OperationalError, StoreError)):
            call()
        assert time.monotonic() - started < 4.0
    finally:
        proxy.stalled.clear()
        proxy.close()
        engine.close()


def test_waiting_for_another_hubs_import_keeps_its_limit_after_a_reconnect(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: the long limit went on the Tx a reconnect then replaced."""
    monkeypatch.setattr(postgres, "CALL_LIMIT_S", 1.0)
    engine = postgres.PostgresEngine(url=postgres_url)
    other = psycopg.connect(postgres_url, autocommit=True)
    try:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(%s)", (postgres.IMPORT_LOCK,))  # another hub importing
        threading.Timer(2.5, lambda: other.execute("COMMIT")).start()
        engine._conn.close()  # the last connection broke (a failover, a watchdog cut)
        started = time.monotonic()
        with engine.serialized():
            pass
        assert time.monotonic() - started >= 2.0  # it waited its turn, past CALL_LIMIT_S
    finally:
        other.close()
        engine.close()
