"""The hub writes readings and alert transitions to its time-series sink: embedded SQLite or real InfluxDB."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.health.metrics import render
from hub.ingest.pipeline import HEALTH_SERIES_INTERVAL_S
from hub.timeseries import Point, query_series
from hub.timeseries.sqlite_sink import SqliteSink
from tests.conftest import server_missing
from tests.helpers import SOS_BUTTON, eventually, hub_settings, publisher
from tests.support.influx import InfluxServer, influxdb
from tests.support.samples import SAMPLES
from tests.support.servers import Broker, ServerMissingError

NOW = 1_795_371_180.0  # 2026-11-23 02:13 Asia/Shanghai
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxServer]:
    try:
        with influxdb(tmp_path / "influx") as server:
            server.create_db("linli")
            yield server
    except ServerMissingError as exc:
        server_missing(str(exc))


async def test_embedded_sink_charts_door_readings_without_any_server(
    tmp_path: Path, mosquitto_broker: Broker
) -> None:
    settings = hub_settings(tmp_path, mosquitto_broker)
    async with Hub(settings=settings, clock=ManualClock(start=NOW)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish("zigbee2mqtt/door-1", b'{"contact": false, "battery": 90}', qos=1)
        gateway.publish("zigbee2mqtt/door-1", b'{"contact": true, "battery": 90}', qos=1)
        await eventually(lambda: hub.pipeline.stats.messages == 2)
        hub.write_gauges()
        await gateway.disconnect()
    # After a clean stop everything is on disk.
    path = settings.data_dir / "timeseries.sqlite"
    (doors,) = query_series(
        path, measurement="door", field="open", start=NOW - 60, end=NOW + 60, bucket_s=3600
    )
    assert [value for _, value in doors.points] == [0.5]  # one open, one closed
    fleet = query_series(
        path,
        measurement="fleet",
        field="total",
        start=NOW - 60,
        end=NOW + 60,
        bucket_s=3600,
        group_by="device_kind",
    )
    assert {s.group: s.points[0][1] for s in fleet} == {
        "sos_button": 2.0,
        "door_sensor": 1.0,
        "parking_sensor": 2.0,
    }


async def test_hub_writes_readings_and_alerts_to_real_influxdb(
    tmp_path: Path, mosquitto_broker: Broker, influx: InfluxServer
) -> None:
    settings = hub_settings(
        tmp_path,
        mosquitto_broker,
        timeseries={"kind": "influx_v1", "url": influx.url, "db": "linli", "flush_interval_s": 0.1},
    )
    async with Hub(settings=settings, clock=ManualClock(start=NOW)) as hub:
        gateway = await publisher(mosquitto_broker)
        gateway.publish(f"zigbee2mqtt/{SOS_BUTTON}", SOS, qos=1)
        gateway.publish("zigbee2mqtt/door-1", b'{"contact": false}', qos=1)
        await eventually(lambda: hub.pipeline.stats.messages == 2)
        await eventually(
            lambda: hub.timeseries.stats.points_delivered >= 4, what="points delivered to InfluxDB"
        )
        await gateway.disconnect()
    alerts = influx.query('SELECT * FROM "alert"', db="linli")["results"][0]["series"][0]
    row = dict(zip(alerts["columns"], alerts["values"][0], strict=True))
    assert row["category"] == "sos" and row["grid"] == "110105001001001" and row["transition"] == "raised"
    doors = influx.query('SELECT "open" FROM "door"', db="linli")["results"][0]["series"][0]
    assert [v[1] for v in doors["values"]] == [1]


def test_health_points_are_charted_once_per_interval_per_device_and_kind(tmp_path: Path) -> None:
    """A device repeats battery and link quality with every message: one point per kind and
    device each ``HEALTH_SERIES_INTERVAL_S``; door changes are charted every time."""
    clock = ManualClock(start=NOW)
    hub = Hub(settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=clock)
    try:
        sink = hub.timeseries
        assert isinstance(sink, SqliteSink)
        written: list[Point] = []
        write = sink.write

        def recording(points: Iterable[Point]) -> None:
            # The sink keeps rows, not points (tests/test_timeseries_buffers.py): record what
            # the pipeline hands it.
            for point in points:
                written.append(point)
                write(point)

        sink.write_many = recording  # type: ignore[method-assign]
        sink.write = lambda point: recording((point,))  # type: ignore[method-assign]

        def charted(topic: str, payload: bytes) -> list[tuple[str, str, tuple[str, ...]]]:
            written.clear()
            hub.pipeline.handle(topic, payload, 1)
            return [
                (str(p.measurement), dict(p.tags)["device_id"], tuple(name for name, _ in p.fields))
                for p in written
            ]

        report = b'{"contact": false, "battery": 90, "linkquality": 120}'
        first = sorted(charted("zigbee2mqtt/door-1", report))
        assert first == [
            ("device_health", "door-1", ("battery_pct",)),
            ("device_health", "door-1", ("rssi",)),
            ("door", "door-1", ("open",)),
        ]
        clock.advance(HEALTH_SERIES_INTERVAL_S - 1)
        # Within the interval: the door's change is charted, its health is not.
        assert charted("zigbee2mqtt/door-1", b'{"contact": true, "battery": 89, "linkquality": 110}') == [
            ("door", "door-1", ("open",))
        ]
        # Another device has its own interval (a report without a change is also a heartbeat).
        assert sorted(charted("zigbee2mqtt/lane-b-1", b'{"battery": 70, "linkquality": 90}')) == [
            ("device_health", "lane-b-1", ("battery_pct",)),
            ("device_health", "lane-b-1", ("heartbeat",)),
            ("device_health", "lane-b-1", ("rssi",)),
        ]
        clock.advance(1)
        assert sorted(charted("zigbee2mqtt/door-1", report)) == first
        # Each kind on its own: a battery-only report after a link-quality-only one.
        clock.advance(HEALTH_SERIES_INTERVAL_S)
        assert sorted(charted("zigbee2mqtt/door-1", b'{"linkquality": 100}')) == [
            ("device_health", "door-1", ("heartbeat",)),
            ("device_health", "door-1", ("rssi",)),
        ]
        assert charted("zigbee2mqtt/door-1", b'{"battery": 88}') == [
            ("device_health", "door-1", ("battery_pct",))
        ]
        assert charted("zigbee2mqtt/door-1", b'{"linkquality": 101, "battery": 87}') == []
    finally:
        hub.close()


def test_a_failing_time_series_sink_never_costs_an_sos_its_alert(tmp_path: Path) -> None:
    """Points are written before the rules run: a sink (or point builder) that raises is
    counted and the press still becomes an alert."""
    hub = Hub(settings=hub_settings(tmp_path, Broker("127.0.0.1", 1, "u", "p")), clock=ManualClock(start=NOW))
    try:

        def broken(points: Iterable[Point]) -> None:
            raise RuntimeError("sink bug")

        hub.timeseries.write_many = broken  # type: ignore[method-assign]
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", SOS, 1)
        hub.pipeline.handle(f"zigbee2mqtt/{SOS_BUTTON}", b'{"battery": 80, "linkquality": 90}', 1)
        assert [a.rule for a in hub.store.alerts()] == ["elderly.sos"]
        assert hub.pipeline.stats.series_errors >= 2  # the press, then the report's health points
        metrics = render(hub.counters.families()).splitlines()
        assert f"linli_series_errors_total {hub.pipeline.stats.series_errors}" in metrics
    finally:
        hub.close()
