"""A short load run against a real Mosquitto: the report is honest (sent == received)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from simulators.community import parse_mix
from simulators.load import LoadConfig, build_pool, count_publishes, run_load, subscriber_main
from tests.support.servers import mosquitto


def test_pool_packets_parse_back() -> None:
    pool = build_pool(devices=200, mix=parse_mix("z2m=1,ttn=1,chirpstack=1,tasmota=1,native=1"), size=500)
    count, used = count_publishes(bytearray(pool.data))
    assert count == pool.count and used == len(pool.data)
    assert set(pool.families) == {"zigbee2mqtt", "ttn_v3", "chirpstack_v4", "tasmota", "native"}


def test_short_run_sent_equals_received(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with mosquitto(tmp_path) as broker:
        ready, counts = ctx.Event(), ctx.Queue()
        sub = ctx.Process(
            target=subscriber_main,
            args=(broker.host, broker.port, broker.username, broker.password, "#", ready, counts, 1.5),
        )
        sub.start()
        assert ready.wait(10)
        report = run_load(
            LoadConfig(
                host=broker.host,
                port=broker.port,
                username=broker.username,
                password=broker.password,
                rate=5000,
                duration=2.0,
                devices=500,
                progress=False,
            )
        )
        received = counts.get(timeout=30)
        sub.join(timeout=10)
    assert report.ok, report.verdict
    assert report.sent == 10_000 == received
    assert 4750 <= report.achieved_rate <= 5300
    assert report.errors == 0 and "sustained" in report.verdict


def test_an_impossible_rate_is_reported_as_such(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        report = run_load(
            LoadConfig(
                host=broker.host,
                port=broker.port,
                username=broker.username,
                password="wrong",
                rate=1000,
                duration=0.5,
                devices=10,
                progress=False,
            )
        )
    assert not report.ok
    assert report.errors >= 1 and "FAILED" in report.verdict
