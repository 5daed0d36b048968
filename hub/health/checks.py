"""The hub's readiness: which conditions an SOS press depends on, and how late a loop may beat.

Composes the generic probes of :mod:`hub.health.readiness` over the hub's stages (the MQTT
sessions, the store and its retry queue, the casework, dispatch and rule-timer loops, the
time-series spool, the working calendar). The app builds one :class:`HubChecks` and serves
:meth:`HubChecks.readiness` as ``/readyz``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from hub.cases.calendar import WorkingCalendar, official_coverage
from hub.clock import Clock
from hub.health.readiness import Check, Readiness, beating, flag, readiness, store_writable
from hub.ingest.retry import Redelivery
from hub.ingest.rule_runtime import RULE_TIMER_POLL_S, RuleRuntime
from hub.mqtt.client import HubMqttClient
from hub.notify.dispatch import IDLE_POLL_S as DISPATCH_IDLE_POLL_S
from hub.notify.dispatch import Dispatcher
from hub.storage.store import Store
from hub.timeseries import TimeseriesSink

#: Readiness fails when the time-series spool is fuller than this (the oldest points go next).
SPOOL_FILL_LIMIT = 0.9


class HubChecks:
    """``/readyz`` for one hub: every check names what is wrong."""

    def __init__(
        self,
        *,
        mqtt: HubMqttClient,
        outbound: HubMqttClient,
        store: Store,
        store_path: Path,
        redelivery: Redelivery,
        min_free_bytes: int,
        casework_beat: Callable[[], float | None],
        casework_period_s: float,
        dispatcher: Dispatcher,
        rule_runtime: RuleRuntime,
        timeseries: TimeseriesSink,
        calendar: Callable[[], WorkingCalendar],
        clock: Clock,
        unopened: Callable[[], Collection[int]] = frozenset,
        start_warnings: Sequence[str] = (),
        priority: HubMqttClient | None = None,
    ) -> None:
        self._mqtt = mqtt
        self._outbound = outbound
        self._store = store
        self._store_path = store_path
        self._redelivery = redelivery
        self._min_free_bytes = min_free_bytes
        self._casework_beat = casework_beat
        self._casework_period_s = casework_period_s
        self._dispatcher = dispatcher
        self._rule_runtime = rule_runtime
        self._timeseries = timeseries
        self._calendar = calendar
        self._unopened = unopened
        self._start_warnings = start_warnings
        self._priority = priority
        self._clock = clock

    def _ingest(self) -> Check:
        """Connected and subscribed, and no filter refused (on the bulk or the SOS lane)."""
        mqtt = self._mqtt
        if not (mqtt.connected.is_set() and mqtt.subscribed.is_set()):
            return Check("mqtt_ingest", False, "the ingest MQTT session is down or not subscribed")
        refused = sorted({*mqtt.refused, *(self._priority.refused if self._priority is not None else ())})
        if refused:
            # A refused SUBACK (a broker's ACL) is no outage, yet nothing on those topics arrives.
            return Check(
                "mqtt_ingest", False, f"the broker refused the subscription(s) {refused} (check its ACL)"
            )
        return Check("mqtt_ingest", True)

    def readiness(self) -> Readiness:
        """Every condition an SOS depends on (``/readyz``); loop beats on the event loop's clock.

        A working calendar without this or next year's official holidays is a warning, not a
        failure: deadlines are still computed (as ordinary weekdays), but someone must act.
        """
        loop_time = asyncio.get_running_loop().time
        outbound = self._outbound
        coverage = official_coverage(self._calendar(), now=self._clock.now())
        warnings = [*self._start_warnings] + ([] if coverage.ok else [coverage.message])
        set_aside = self._rule_runtime.state_set_aside
        if set_aside is not None:
            warnings.append(
                f"the rule-state file was unreadable and is kept as {set_aside}: rule timers"
                " (absences, durations) started afresh at this start"
            )
        unopened = sorted(self._unopened())
        if unopened:
            # A warning, not a failure: every other press is still handled; this one needs a
            # person now (the console shows warnings in a banner).
            shown = ", ".join(f"alert {alert_id}" for alert_id in unopened[:10])
            warnings.append(
                f"{len(unopened)} active alert(s) without a case, nobody told: {shown}"
                " (the casework loop keeps trying; linli quarantine list)"
            )
        return readiness(
            warnings=warnings,
            probes=[
                self._ingest,
                flag(
                    "mqtt_outbound",
                    outbound.connected.is_set,
                    wrong="the notification MQTT session is down",
                ),
                store_writable(
                    writable=self._store.check_writable,
                    path=self._store_path,
                    held=lambda: self._redelivery.depth,
                    min_free_bytes=self._min_free_bytes,
                ),
                beating(
                    "casework_loop",
                    last=self._casework_beat,
                    now=loop_time,
                    period_s=2 * self._casework_period_s + 1,
                ),
                beating(
                    "dispatch_loop",
                    last=lambda: self._dispatcher.beat,
                    now=loop_time,
                    period_s=2 * DISPATCH_IDLE_POLL_S + 1,
                ),
                flag(
                    "rule_state",
                    lambda: self._rule_runtime.state_ok,
                    wrong="rule state cannot be written to disk (timers would not survive a restart)",
                ),
                beating(
                    "rule_timers",
                    last=lambda: self._rule_runtime.beat,
                    now=loop_time,
                    period_s=2 * RULE_TIMER_POLL_S + 1,
                ),
                flag(
                    "timeseries_spool",
                    lambda: self._timeseries.spool_fill < SPOOL_FILL_LIMIT,
                    wrong=f"the time-series spool is over {SPOOL_FILL_LIMIT:.0%} full",
                ),
            ],
        )
