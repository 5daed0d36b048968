"""Shared fixtures: real brokers on random loopback ports, a hub wired to them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.broker import EmbeddedBroker
from tests.support.servers import Broker, ServerMissingError, mosquitto

IN_CI = bool(os.environ.get("CI"))


def server_missing(reason: str) -> None:
    """Skip locally, fail in CI: a CI run must never pass by not running server tests."""
    if IN_CI:
        pytest.fail(f"required server missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[Broker]:
    try:
        with mosquitto(tmp_path / "mosquitto") as broker:
            yield broker
    except ServerMissingError as exc:
        server_missing(str(exc))


@pytest.fixture
async def embedded_broker() -> AsyncIterator[Broker]:
    """The embedded broker, exposed with the same shape as the Mosquitto fixture."""
    broker = EmbeddedBroker(host="127.0.0.1", port=0, users={"linli": "test-secret"})
    await broker.start()
    try:
        yield Broker("127.0.0.1", broker.port, "linli", "test-secret")
    finally:
        await broker.stop()
