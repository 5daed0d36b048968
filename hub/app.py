"""The hub: built once at start-up from settings, every part passed in, every loop a named task."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from pydantic import ValidationError

from adapters.errors import LinliError
from adapters.profiles import BUILTIN_PROFILES, load_profiles
from adapters.router import AdapterRouter, FamilySource
from hub.api import Api
from hub.bus import AlertBus
from hub.case_store import CaseStore
from hub.cases.model import Case
from hub.cases.policies import load_policies
from hub.casework import Casework
from hub.channels.preferences import Preferences
from hub.clock import Clock, ManualClock, SystemClock, wall_delay
from hub.config import Settings
from hub.device_state import DeviceStates
from hub.dispatch import Dispatcher
from hub.errors import ConfigError
from hub.mqtt_client import HubMqttClient
from hub.pipeline import Pipeline
from hub.quarantine import Quarantine
from hub.registry import Registry
from hub.registry_io import load_yaml
from hub.routing import Routing
from hub.rule_state import RuleStateStore
from hub.store import Store
from hub.timeseries import (
    QuarantinedLines,
    TrafficLight,
    case_open_point,
    fleet_point,
    hub_point,
    open_sink,
    quarantine_point,
)
from hub.views import device_json
from hub.webhooks import WebhookSender
from rules.evaluator import Evaluator
from rules.loader import BUILTIN_PACKS, load_packs
from rules.model import Rule
from rules.state import MemoryState

log = logging.getLogger(__name__)

QUARANTINE_FLUSH_S = 1.0
#: After start-up, rule timers wait until no message came for this long (the broker's backlog
#: of queued messages is processed), but never longer than the bound.
CATCH_UP_QUIET_S = 1.0
CATCH_UP_MAX_S = 15.0
RULE_TIMER_POLL_S = 1.0
RULE_WATCH_S = 2.0
ROUTINE_STATE_FLUSH_S = 5.0
#: The casework loop looks at least this often even with no deadline (a safety net).
CASEWORK_POLL_S = 5.0
GAUGE_INTERVAL_S = 60.0
#: Below this battery percentage a device counts as "low battery" on the fleet gauge.
LOW_BATTERY_PCT = 20.0
SUBSCRIBE_TIMEOUT_S = 10.0


def _ignore(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    """The outbound connection subscribes to nothing."""


def load_preferences(path: Path | None) -> Preferences:
    """Per-person channel preferences from YAML (``people: [{person_id, endpoints: [...]}]``)."""
    if path is None:
        return Preferences()
    try:
        return Preferences.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"invalid channel preferences: {exc}", key="channels_file", source=f"file {path}"
        ) from None


class Hub:
    """Owns the store, the MQTT session, the pipeline, the dispatcher and the HTTP server."""

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock | None = None,
        registry: Registry | None = None,
        rules: Sequence[Rule] | None = None,
    ) -> None:
        self.settings = settings
        if clock is None and settings.test_clock_start is not None:
            clock = ManualClock(start=settings.test_clock_start)
        self.clock = clock or SystemClock()
        self.replies = 0
        if rules is None:
            rules = load_packs(settings.rule_paths or (BUILTIN_PACKS,))
        self.rules = tuple(rules)
        self.store = Store(path=Path(settings.data_dir) / "linli.sqlite3")
        if registry is None:
            if settings.community_file is not None:
                # Idempotent: an unchanged file changes nothing; a changed one updates in place.
                self.store.save_communities(load_yaml(settings.community_file), at=self.clock.now())
            registry = Registry(communities=self.store.communities(), unassigned=self.store.unassigned())
        self.registry = registry
        self.bus = AlertBus()
        self.states = DeviceStates()
        self.quarantine = Quarantine(store=self.store)
        self.adapters = AdapterRouter(
            sources=[FamilySource(s.family, s.base_topic) for s in settings.sources],
            profiles=load_profiles((BUILTIN_PROFILES, *settings.profile_paths))
            if settings.profile_paths
            else None,
        )
        self.routing = Routing(registry=registry, zone=settings.zone, topic_prefix=settings.mqtt.topic_prefix)
        self.rule_state = RuleStateStore(store=self.store)
        self._state: MemoryState = self.rule_state.load()
        self.evaluator = Evaluator(
            rules=self.rules, state=self._state, zone=settings.timezone, overrides=settings.rule_overrides
        )
        # Every expected device gets its absence deadlines (a device that never reports is caught).
        self.evaluator.start(registry.subjects(), self.clock.now())
        self._state_flush_pending = False
        self._rules_stamp: tuple[tuple[str, float], ...] = ()
        self.caught_up = asyncio.Event()
        self.mqtt = HubMqttClient(
            url=settings.mqtt.parsed_url,
            client_id=settings.mqtt.client_id,
            on_message=self._on_message,
            subscriptions=[*self.adapters.subscriptions(), self.routing.reply_subscription()],
            tls_ca_file=str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None,
        )
        # Notifications leave on their own connection: on the ingest connection their PUBACKs
        # would queue behind any backlog of sensor traffic, delaying an SOS notification.
        self.outbound = HubMqttClient(
            url=settings.mqtt.parsed_url,
            client_id=f"{settings.mqtt.client_id}-out",
            on_message=_ignore,
            subscriptions=[],
            tls_ca_file=str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None,
        )
        self.webhooks = WebhookSender(secrets=settings.channel_secrets, zone=settings.zone)
        self.dispatcher = Dispatcher(
            store=self.store, mqtt=self.outbound, clock=self.clock, webhooks=self.webhooks
        )
        self.timeseries = open_sink(
            settings.timeseries,
            data_dir=Path(settings.data_dir),
            clock=self.clock,
            on_quarantine=self._timeseries_refused,
        )
        self.cases = CaseStore(store=self.store)
        self._casework_wake = asyncio.Event()
        self.casework = Casework(
            store=self.store,
            cases=self.cases,
            registry=registry,
            routing=self.routing,
            policies=load_policies(settings.policies_file),
            clock=self.clock,
            zone=settings.zone,
            series=self.timeseries,
            on_notifications=self.dispatcher.wake,
            on_change=self._case_changed,
            preferences=load_preferences(settings.channels_file),
            on_retry=self._casework_wake.set,
            on_bad_reply=self._bad_reply,
        )
        self._reply_prefix = settings.mqtt.topic_prefix + "/"
        self.pipeline = Pipeline(
            adapters=self.adapters,
            registry=registry,
            evaluator=self.evaluator,
            store=self.store,
            routing=self.routing,
            clock=self.clock,
            quarantine=self.quarantine,
            states=self.states,
            bus=self.bus,
            on_notifications=self.dispatcher.wake,
            max_payload_bytes=settings.mqtt.max_payload_bytes,
            series=self.timeseries,
            on_alert_change=self.casework.on_alert_change,
            on_state_change=self._state_changed,
        )
        self.api = Api(
            store=self.store,
            bus=self.bus,
            tokens=settings.api_tokens,
            stats=self.stats,
            timezone=settings.timezone,
            registry=registry,
            states=self.states,
            clock=self.clock,
            casework=self.casework,
            reload_rules=self.reload_rules,
            advance_clock=self.advance_clock if isinstance(self.clock, ManualClock) else None,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None

    def _timeseries_refused(self, refused: QuarantinedLines) -> None:
        # The server will never accept these lines (HTTP 4xx): keep them with its message.
        for line in refused.lines:
            self.quarantine.add(
                topic="timeseries",
                reason=f"influx_{refused.status}",
                detail=refused.message,
                payload=line.encode(),
                at=self.clock.now(),
            )

    def _on_message(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if topic.startswith(self._reply_prefix) and self.casework.on_reply(topic, payload):
            self.replies += 1
            return
        self.pipeline.handle(topic, payload, qos, retain)

    def _state_changed(self) -> None:
        # Rule state goes to disk once per event-loop turn, however many messages the turn had.
        if not self._state_flush_pending:
            self._state_flush_pending = True
            try:
                asyncio.get_running_loop().call_soon(self.flush_rule_state)
            except RuntimeError:  # no loop (tools, in-process benchmarks): write now
                self.flush_rule_state()

    def flush_rule_state(self, *, include_routine: bool = False) -> int:
        self._state_flush_pending = False
        return self.rule_state.flush(self._state, include_routine=include_routine)

    async def _flush_routine_state(self) -> None:
        """Routine rule-state updates (deadlines moved on by readings) go to disk every few seconds."""
        while True:
            await asyncio.sleep(ROUTINE_STATE_FLUSH_S)
            self.flush_rule_state(include_routine=True)

    def _rule_files(self) -> list[Path]:
        roots = self.settings.rule_paths or (BUILTIN_PACKS,)
        return sorted(f for root in roots for f in (root.glob("*.yaml") if root.is_dir() else [root]))

    def _rule_files_stamp(self) -> tuple[tuple[str, float], ...]:
        return tuple((str(f), f.stat().st_mtime) for f in self._rule_files() if f.exists())

    def reload_rules(self) -> int:
        """Load the packs again; state of rules that still exist is kept. Bad packs change nothing."""
        rules = load_packs(self.settings.rule_paths or (BUILTIN_PACKS,))
        self.evaluator.reload(rules, self.settings.rule_overrides)
        self.evaluator.start(self.registry.subjects(), self.clock.now())
        self.rules = tuple(rules)
        self._rules_stamp = self._rule_files_stamp()
        self.flush_rule_state()
        log.info("rule packs reloaded: %d rules", len(rules))
        return len(rules)

    async def _watch_rules(self) -> None:
        """Reload the packs when a file changes (``linli rules reload`` does it on demand)."""
        while True:
            await asyncio.sleep(RULE_WATCH_S)
            stamp = await asyncio.to_thread(self._rule_files_stamp)
            if stamp != self._rules_stamp:
                try:
                    self.reload_rules()
                except LinliError as exc:
                    self._rules_stamp = stamp  # do not retry the same broken files every 2 s
                    log.error("rule packs changed but are invalid; keeping the old rules: %s", exc)

    async def advance_clock(self, to: float) -> float:
        """Scenario testing: move the manual clock to ``to`` and do everything due by then.

        Rule timers and escalation steps fire in time order (each step advances to the next
        deadline), and the call returns once the notifications they queued were delivered.
        """
        assert isinstance(self.clock, ManualClock)
        if to < self.clock.now():
            raise ValueError("time does not run backwards")
        previous: float | None = None
        while True:
            deadlines = [
                d for d in (self.evaluator.next_due(), self.casework.next_deadline()) if d is not None
            ]
            step = max(min([to, *deadlines]), self.clock.now())
            if step == previous:
                # A deadline that does not move on after its work ran: go straight to ``to``.
                step = to
            self.clock.set(step)
            self.run_due_rules()
            self.casework.tick()
            if step >= to:
                break
            previous = step
        self.dispatcher.wake()
        for _ in range(200):  # up to ~2 s for the broker's PUBACKs
            if not self.store.pending_notifications(now=self.clock.now()):
                break
            await asyncio.sleep(0.01)
        return self.clock.now()

    def run_due_rules(self) -> int:
        """Fire the rule timers due now (durations, absences, count windows); returns signals applied."""
        signals = self.evaluator.due(self.clock.now())
        self.pipeline.apply_signals(signals)
        self.flush_rule_state()
        return len(signals)

    async def _run_rule_timers(self) -> None:
        """Rule timers, started only after the backlog the broker kept for us is processed.

        Messages queued while the hub was down arrive first; an overdue timer whose condition
        cleared in that backlog must be cancelled by it, not fire (a door closed while we were
        down). So: wait until the stream goes quiet (or a bound), then fire what is still due.
        """
        seen, quiet_since, started = -1, self.clock.now(), asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - started < CATCH_UP_MAX_S:
            if self.pipeline.stats.messages != seen:
                seen, quiet_since = self.pipeline.stats.messages, asyncio.get_running_loop().time()
            elif asyncio.get_running_loop().time() - quiet_since >= CATCH_UP_QUIET_S:
                break
            await asyncio.sleep(0.05)
        log.info("caught up after %d queued message(s); rule timers running", max(seen, 0))
        self.caught_up.set()
        while True:
            self.run_due_rules()
            next_at = self.evaluator.next_due()
            delay = (
                RULE_TIMER_POLL_S
                if next_at is None
                else min(RULE_TIMER_POLL_S, wall_delay(self.clock, max(0.0, next_at - self.clock.now())))
            )
            await asyncio.sleep(delay)

    def _bad_reply(self, topic: str, reason: str, detail: str, payload: bytes) -> None:
        self.quarantine.add(topic=topic, reason=reason, detail=detail, payload=payload, at=self.clock.now())

    def _case_changed(self, case: Case) -> None:
        self.bus.publish({"type": "case", "case": self.casework.case_json(case)})
        self._casework_wake.set()

    def stats(self) -> dict[str, Any]:
        return {
            "pipeline": asdict(self.pipeline.stats),
            "quarantine": dict(self.quarantine.counts),
            "devices_seen": len(self.states),
            "unassigned_devices": len(self.registry.unassigned),
            "notifications_delivered": self.dispatcher.delivered,
            "notification_failures": self.dispatcher.failed_attempts,
            "mqtt_connected": self.mqtt.connected.is_set(),
            "mqtt_subscribed": self.mqtt.subscribed.is_set(),
            "mqtt_outbound_connected": self.outbound.connected.is_set(),
            "mqtt_handler_errors": self.mqtt.handler_errors,
            "replies": self.replies,
            "timeseries": asdict(self.timeseries.stats),
        }

    async def start(self) -> None:
        if not self.settings.api_tokens:
            log.warning("no API tokens configured: the API and console will refuse every request")
        self._runner = web.AppRunner(self.api.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.settings.http.port
        await self.timeseries.start()  # replays what a crash left in the spool
        # Deliver what an earlier run left pending before anything new arrives.
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="linli-dispatcher"))
        # Cases for alerts a crash left without one, then whatever fell due while we were down.
        self.casework.reconcile()
        self.casework.tick()
        self._tasks.append(asyncio.create_task(self._run_casework(), name="linli-casework"))
        self._tasks.append(asyncio.create_task(self._flush_quarantine(), name="linli-quarantine-flush"))
        self._tasks.append(asyncio.create_task(self._gauges(), name="linli-gauges"))
        await self.outbound.connect()
        await self.mqtt.connect()
        try:
            await asyncio.wait_for(self.mqtt.subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            log.error(
                "no SUBACK from the broker within %.0f s; messages may not arrive yet", SUBSCRIBE_TIMEOUT_S
            )
        self._tasks.append(asyncio.create_task(self._run_rule_timers(), name="linli-rule-timers"))
        self._rules_stamp = self._rule_files_stamp()
        self._tasks.append(asyncio.create_task(self._watch_rules(), name="linli-rule-watch"))
        self._tasks.append(asyncio.create_task(self._flush_routine_state(), name="linli-rule-state"))
        # The rule engine and registry are loaded: keep the collector off these long-lived objects.
        gc.freeze()
        log.info(
            "hub running: MQTT %s, HTTP http://%s:%s, %d rules, %d devices registered",
            self.settings.mqtt.parsed_url.redacted(),
            self.settings.http.host,
            self.http_port,
            len(self.rules),
            sum(len(c.devices) for c in self.registry.communities),
        )

    async def _run_casework(self) -> None:
        """Escalation steps, reminders and 督办 at their deadlines (persisted, so they survive restarts)."""
        while True:
            self._casework_wake.clear()
            try:
                # Any active alert without a case (a failed or interrupted open) gets one now.
                self.casework.reconcile()
                self.casework.tick()
            except Exception:
                log.exception("casework round failed; retrying in %.0f s", CASEWORK_POLL_S)
            next_at = self.casework.next_deadline()
            timeout = (
                CASEWORK_POLL_S
                if next_at is None
                else min(CASEWORK_POLL_S, wall_delay(self.clock, max(0.0, next_at - self.clock.now())))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._casework_wake.wait(), timeout)

    async def _flush_quarantine(self) -> None:
        while True:
            await asyncio.sleep(QUARANTINE_FLUSH_S)
            self.quarantine.flush()

    async def _gauges(self) -> None:
        """Periodic gauges for the dashboards: the fleet per grid and kind, hub self-metrics."""
        lag = 0.0
        while True:
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(GAUGE_INTERVAL_S)
            lag = max(0.0, asyncio.get_running_loop().time() - started - GAUGE_INTERVAL_S) * 1000
            self.write_gauges(loop_lag_ms=lag)

    def write_gauges(self, *, loop_lag_ms: float = 0.0) -> None:
        now = self.clock.now()
        for (community, grid, severity, light), count in self.casework.open_counts(now).items():
            self.timeseries.write(
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
        for device in self.registry.devices():
            info = self.registry.series_info(device.id)
            view = device_json(self.registry, self.states, device.id, now=now) or {}
            counts = fleet.setdefault((info.community, info.grid, info.device_kind), [0, 0, 0])
            counts[0] += 1
            counts[1] += 1 if view.get("online") else 0
            battery = view.get("battery")
            counts[2] += 1 if isinstance(battery, float) and battery < LOW_BATTERY_PCT else 0
        for (community, grid, kind), (total, online, low) in fleet.items():
            self.timeseries.write(
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
        stats = self.pipeline.stats
        ts_stats = self.timeseries.stats
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
        instance = self.settings.mqtt.client_id
        self.timeseries.write(hub_point(instance=instance, metrics=metrics, ts=now))
        for reason, count in self.quarantine.counts.items():
            self.timeseries.write(quarantine_point(instance=instance, reason=reason, count=count, ts=now))

    async def stop(self) -> None:
        """Stop taking messages, then cancel and await every task, then close the store."""
        for client in (self.mqtt, self.outbound):
            try:
                await client.disconnect()
            except Exception:
                log.exception("error while disconnecting from MQTT")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("task %s failed", task.get_name())
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.webhooks.close()
        try:
            await self.timeseries.stop()  # flushes to the server, or to the spool
        except Exception:
            log.exception("time-series sink did not stop cleanly")
        self.quarantine.flush()
        self.flush_rule_state(include_routine=True)
        self.store.close()

    async def __aenter__(self) -> Hub:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
