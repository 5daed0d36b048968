"""Linli time series: points from events, alerts and cases, written to InfluxDB or an embedded SQLite file.

Owns: the schema (:mod:`hub.timeseries.schema`, documented in ``docs/timeseries.md``), the
line-protocol encoder, the batching/retrying/spooling InfluxDB writer (v1 and v2 write APIs),
the embedded SQLite sink with its console query, and ``doctor``.
Must not import: any stage (``hub.ingest``, ``hub.casework``, ``hub.notify``, ``hub.web``,
``hub.storage``), ``hub.app``, ``simulators`` or ``dashboards``;
the hub calls in (``sink.write(point)`` on the hot path), never the other way round.

Typical wiring::

    sink = open_sink(settings.timeseries, data_dir=data_dir, clock=clock, on_quarantine=...)
    await sink.start()
    sink.write_many(event_points(event, SubjectInfo(grid=..., community=...)))
    await sink.stop()          # flushes everything, or spools it
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from hub.clock import Clock
from hub.timeseries.doctor import Finding, Level, doctor
from hub.timeseries.event_series import EventSeries
from hub.timeseries.line_protocol import Point, encode
from hub.timeseries.schema import (
    AlertTransition,
    CaseStage,
    CaseTransition,
    Measurement,
    SubjectInfo,
    TrafficLight,
    alert_point,
    alert_transition,
    case_open_point,
    case_point,
    event_points,
    fleet_point,
    hub_point,
    quarantine_point,
    visit_point,
)
from hub.timeseries.settings import TimeseriesKind, TimeseriesSettings
from hub.timeseries.sqlite_sink import Aggregate, Series, SqliteSink, query_series
from hub.timeseries.writer import InfluxWriter, QuarantinedLines, WriterStats


class TimeseriesSink(Protocol):
    """What the hub holds: :class:`InfluxWriter` or :class:`SqliteSink`."""

    stats: WriterStats

    @property
    def spool_fill(self) -> float: ...
    def write(self, point: Point) -> None: ...
    def write_many(self, points: Iterable[Point]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, *, grace_s: float = 10.0) -> None: ...


def open_sink(
    settings: TimeseriesSettings,
    *,
    data_dir: Path,
    clock: Clock,
    on_quarantine: Callable[[QuarantinedLines], None] | None = None,
) -> InfluxWriter | SqliteSink:
    """The sink ``settings.kind`` asks for (not started yet)."""
    if settings.kind is TimeseriesKind.NONE:
        return SqliteSink(
            path=settings.sqlite_file(data_dir),
            retention_days=settings.retention_days,
            clock=clock,
            flush_interval_s=settings.flush_interval_s,
        )
    return InfluxWriter(
        settings=settings, spool_dir=settings.spool_path(data_dir), on_quarantine=on_quarantine
    )


__all__ = [
    "Aggregate",
    "AlertTransition",
    "CaseStage",
    "CaseTransition",
    "EventSeries",
    "Finding",
    "InfluxWriter",
    "Level",
    "Measurement",
    "Point",
    "QuarantinedLines",
    "Series",
    "SqliteSink",
    "SubjectInfo",
    "TimeseriesKind",
    "TimeseriesSettings",
    "TimeseriesSink",
    "TrafficLight",
    "WriterStats",
    "alert_point",
    "alert_transition",
    "case_open_point",
    "case_point",
    "doctor",
    "encode",
    "event_points",
    "fleet_point",
    "hub_point",
    "open_sink",
    "quarantine_point",
    "query_series",
    "visit_point",
]
