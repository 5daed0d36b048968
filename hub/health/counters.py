"""The hub's ``/metrics``: which counters the stages already keep, under which Prometheus names.

Read at scrape time from the pipeline, the MQTT client, the retry queue, the dispatcher, the
time-series writer, the quarantine, casework, the event stream and the HTTP server's connection
limits; nothing is counted twice on the hot path. :mod:`hub.health.metrics` renders the families.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hub.casework.service import Casework
from hub.clock import Clock
from hub.health.metrics import Family
from hub.ingest.pipeline import Pipeline
from hub.ingest.quarantine import Quarantine
from hub.ingest.retry import Redelivery
from hub.mqtt.client import HubMqttClient
from hub.notify.dispatch import Dispatcher
from hub.steps import Steps, run_through
from hub.timeseries import TimeseriesSink


class HubCounters:
    """The metric families of one hub, read now."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        mqtt: HubMqttClient,
        redelivery: Redelivery,
        dispatcher: Dispatcher,
        timeseries: TimeseriesSink,
        quarantine: Quarantine,
        casework: Casework,
        loop_lag_s: Callable[[], float],
        stream_clients: Callable[[], int],
        stream_dropped: Callable[[], int],
        http_connections: Callable[[], int],
        http_refused: Callable[[], int],
        http_refused_per_address: Callable[[], int],
        http_deadline_closes: Callable[[], Mapping[str, int]],
        http_auth_failures: Callable[[], int],
        http_auth_throttled: Callable[[], int],
        clock: Clock,
    ) -> None:
        self._pipeline = pipeline
        self._mqtt = mqtt
        self._redelivery = redelivery
        self._dispatcher = dispatcher
        self._timeseries = timeseries
        self._quarantine = quarantine
        self._casework = casework
        self._loop_lag_s = loop_lag_s
        self._stream_clients = stream_clients
        self._stream_dropped = stream_dropped
        self._http_connections = http_connections
        self._http_refused = http_refused
        self._http_refused_per_address = http_refused_per_address
        self._http_deadline_closes = http_deadline_closes
        self._http_auth_failures = http_auth_failures
        self._http_auth_throttled = http_auth_throttled
        self._clock = clock

    def families(self) -> list[Family]:
        """The hub's counters for ``/metrics`` (Prometheus), read now from what the stages keep."""
        return run_through(self.family_steps())

    def family_steps(self) -> Steps[list[Family]]:
        """:meth:`families`, yielding while the open cases' traffic lights are worked out.

        Those are every open case's, for the scrape's instant: in a storm of thousands, a
        scrape every 15 s would otherwise hold the loop that takes SOS presses for as long
        (:meth:`hub.casework.service.Casework.open_counts_steps`).
        """
        stats = self._pipeline.stats
        ts = self._timeseries.stats
        families = [
            Family("linli_messages_total", "counter", "MQTT messages taken in").add(stats.messages),
            Family("linli_events_total", "counter", "normalised events decoded").add(stats.events),
            Family("linli_signals_total", "counter", "rule signals stored").add(stats.signals),
            Family("linli_alerts_raised_total", "counter", "alerts opened").add(stats.alerts_raised),
            Family(
                "linli_series_errors_total",
                "counter",
                "events whose time-series points failed (rules still ran)",
            ).add(stats.series_errors),
            Family("linli_handler_errors_total", "counter", "messages the hub failed to handle at first").add(
                self._mqtt.handler_errors
            ),
            Family("linli_held_messages", "gauge", "messages held for the hub's own retry").add(
                self._redelivery.depth
            ),
            Family("linli_notifications_delivered_total", "counter", "notifications delivered").add(
                self._dispatcher.delivered
            ),
            Family("linli_notification_failures_total", "counter", "failed delivery attempts").add(
                self._dispatcher.failed_attempts
            ),
            Family("linli_notifications_abandoned_total", "counter", "notifications refused for good").add(
                self._dispatcher.abandoned
            ),
            Family("linli_mqtt_reconnects_total", "counter", "MQTT reconnects (ingest session)").add(
                self._mqtt.reconnects
            ),
            Family("linli_timeseries_points_spooled_total", "counter", "points written to the spool").add(
                ts.points_spooled
            ),
            Family("linli_timeseries_spool_fill_ratio", "gauge", "how full the spool is").add(
                self._timeseries.spool_fill
            ),
            Family("linli_failing_cases", "gauge", "cases whose last casework round failed").add(
                len(self._casework.failing)
            ),
            Family(
                "linli_alerts_without_case",
                "gauge",
                "active alerts no case could be opened for (nobody was told)",
            ).add(len(self._casework.unopened)),
            Family("linli_stream_clients", "gauge", "event-stream (SSE) clients connected").add(
                self._stream_clients()
            ),
            Family(
                "linli_stream_dropped_total", "counter", "event-stream clients dropped for falling behind"
            ).add(self._stream_dropped()),
            Family("linli_http_connections", "gauge", "HTTP connections open (event streams included)").add(
                self._http_connections()
            ),
            Family(
                "linli_http_connections_refused_total",
                "counter",
                "HTTP connections closed on arrival: http.max_connections were open, or their address"
                " held http.max_connections_per_address",
            ).add(self._http_refused()),
            Family(
                "linli_http_connections_refused_per_address_total",
                "counter",
                "HTTP connections closed on arrival because their address held http.max_connections_per_address",
            ).add(self._http_refused_per_address()),
            Family(
                "linli_http_auth_failures_total",
                "counter",
                "token checks that failed (a wrong token at POST /login or as Bearer)",
            ).add(self._http_auth_failures()),
            Family(
                "linli_http_auth_throttled_total",
                "counter",
                "token checks refused with 429: their address had used up http.auth_attempts",
            ).add(self._http_auth_throttled()),
        ]
        quarantine = Family("linli_quarantined_total", "counter", "records quarantined, by reason")
        for reason, count in sorted(self._quarantine.counts.items()):
            quarantine.add(count, reason=reason)
        quarantine_pruned = Family(
            "linli_quarantine_pruned_total",
            "counter",
            "quarantine rows the store pruned to stay bounded (least recently seen first)",
        ).add(self._quarantine.pruned)
        open_cases = Family("linli_open_cases", "gauge", "open cases by severity and worst traffic light")
        by_light: dict[tuple[str, str], int] = {}
        counts = yield from self._casework.open_counts_steps(self._clock.now())
        for (_community, _grid, severity, light), count in counts.items():
            by_light[severity, light] = by_light.get((severity, light), 0) + count
        for (severity, light), count in sorted(by_light.items()):
            open_cases.add(count, severity=severity, light=light)
        steps = Family("linli_escalation_steps_total", "counter", "escalation steps sent, by kind")
        for kind, count in sorted(self._casework.steps_sent.items()):
            steps.add(count, kind=kind)
        late = Family(
            "linli_http_deadline_closes_total",
            "counter",
            "HTTP connections closed because a request's headers or body were not in within their deadline",
        )
        for deadline, count in sorted(self._http_deadline_closes().items()):
            late.add(count, deadline=deadline)
        lag = Family("linli_loop_lag_seconds", "gauge", "event-loop lag measured by the gauge loop")
        lag.add(self._loop_lag_s())
        return [*families, quarantine, quarantine_pruned, open_cases, steps, late, lag]
