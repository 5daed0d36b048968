"""Periodic gauges for the dashboards: open cases, the fleet per grid and kind, hub self-metrics.

Read from what the stages already count (no extra work on the hot path); written to the
time-series sink once a minute by the hub's gauge loop, in steps (:mod:`hub.steps`): walking
100 000 devices or a few hundred busy cases in one go would stall the event loop that
carries the SOS presses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hub.community.registry import Registry
from hub.ingest.device_state import DeviceStates, is_online
from hub.ingest.pipeline import PipelineStats
from hub.ingest.quarantine import Quarantine
from hub.steps import Steps, run_through
from hub.timeseries import (
    TimeseriesSink,
    TrafficLight,
    case_open_point,
    fleet_point,
    hub_point,
    quarantine_point,
)

#: Below this battery percentage a device counts as "low battery" on the fleet gauge.
LOW_BATTERY_PCT = 20.0

#: Devices the fleet gauge counts between two turns of the event loop (≈ 1-2 µs each).
DEVICES_PER_STEP = 2_000

#: Open cases per (community, grid, severity, worst traffic light), worked out in steps.
OpenCases = Callable[[float], Steps[Mapping[tuple[str, str, str, str], int]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Gauges:
    instance: str
    registry: Registry
    states: DeviceStates
    open_cases: OpenCases
    pipeline: PipelineStats
    quarantine: Quarantine
    series: TimeseriesSink

    def write(self, now: float, *, loop_lag_ms: float = 0.0) -> None:
        run_through(self.write_steps(now, loop_lag_ms=loop_lag_ms))

    def write_steps(self, now: float, *, loop_lag_ms: float = 0.0) -> Steps[None]:
        """:meth:`write`, yielding between pieces of at most :data:`DEVICES_PER_STEP` devices."""
        open_cases = yield from self.open_cases(now)
        for (community, grid, severity, light), count in open_cases.items():
            self.series.write(
                case_open_point(
                    community=community,
                    grid=grid,
                    severity=severity,
                    light=TrafficLight(light),
                    open_cases=count,
                    ts=now,
                )
            )
        fleet: dict[tuple[str, str, str], list[int]] = {}
        for i, device in enumerate(self.registry.devices()):
            if i and i % DEVICES_PER_STEP == 0:
                yield
            info = self.registry.series_info(device.id)
            state = self.states.get(device.id)
            counts = fleet.setdefault((info.community, info.grid, info.device_kind), [0, 0, 0])
            counts[0] += 1
            counts[1] += 1 if is_online(state, device.heartbeat_s, now) else 0
            battery = state.battery if state is not None else None
            counts[2] += 1 if battery is not None and battery < LOW_BATTERY_PCT else 0
        for (community, grid, kind), (total, online, low) in fleet.items():
            self.series.write(
                fleet_point(
                    community=community,
                    grid=grid,
                    device_kind=kind,
                    total=total,
                    online=online,
                    low_battery=low,
                    ts=now,
                )
            )
        stats = self.pipeline
        ts_stats = self.series.stats
        metrics: dict[str, int | float] = {
            "messages": stats.messages,
            "events": stats.events,
            "signals": stats.signals,
            "alerts_raised": stats.alerts_raised,
            "quarantined": stats.quarantined,
            "ts_points_written": ts_stats.points_written,
            "ts_points_spooled": ts_stats.points_spooled,
            "ts_points_dropped": ts_stats.points_dropped,
            "ts_points_quarantined": ts_stats.points_quarantined,
            "loop_lag_ms": loop_lag_ms,
        }
        self.series.write(hub_point(instance=self.instance, metrics=metrics, ts=now))
        for reason, count in self.quarantine.counts.items():
            self.series.write(quarantine_point(instance=self.instance, reason=reason, count=count, ts=now))
