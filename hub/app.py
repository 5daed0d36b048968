"""The composition root: build every part from settings, wire the stages, run the named loops.

Nothing here decides anything about alerts, cases or access: it builds the stages, passes
each its dependencies (keyword-only), connects them by the callbacks named below, and starts
and stops the long-running loops (each a named task, cancelled and awaited on stop).

The SOS path, stage by stage (one folder each):

1. ``hub/mqtt`` — the ingest connection takes a message; its PUBACK waits for step 4. A
   press comes on the priority lane's own connection, ahead of sensor traffic; its copy on
   the bulk connection is recognised and acknowledged unhandled (:mod:`hub.ingest.lanes`).
2. ``hub/ingest`` — adapters decode it, the rules decide, the alert and its outbox rows
   commit in one transaction (:mod:`hub.ingest.alerts`).
3. ``hub/casework`` — the committed alert opens a case and dispatches it to the on-duty
   grid worker, in the same call (:meth:`Hub._alert_changed`).
4. ``hub/notify`` — the dispatcher delivers the queued notifications on its own connection.
5. ``hub/web`` — the API, console, phone page and event stream read it all.

Must not import: ``simulators``, ``dashboards`` (the CLI passes the simulator in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from adapters.profiles import BUILTIN_PROFILES, load_profiles
from adapters.router import AdapterRouter, FamilySource
from hub.cases.model import Case
from hub.cases.policies import load_policies
from hub.casework.care_plans import site_care_or_defaults
from hub.casework.evaluations import LINK_KEY_FILE, Evaluations
from hub.casework.guardian_links import GuardianLinks
from hub.casework.replies import Replies, ReplyTopics
from hub.casework.reply_keys import ReplyKeys
from hub.casework.service import Casework
from hub.casework.signs import ANY_SIGN
from hub.casework.visits import Visits
from hub.channels.preferences import Preferences
from hub.clock import Clock, DemoClock, ManualClock, ScaledClock, SteadyClock, SystemClock, wall_delay
from hub.cluster.events import Change, Kind
from hub.cluster.wiring import cluster_runtime, community_sources, owned_signals
from hub.community.compact import collector_paused
from hub.community.files import file_digest, imported_digest, load_yaml, mark_imported
from hub.community.personal import PersonalData
from hub.community.registry import Registry
from hub.community.topic_roots import outside_own_topics, refuse_own_topics
from hub.config import STORE_FILE, Settings
from hub.errors import BrokerUnreachableError, ConfigError, MessageDeferred, NotStoredError, RegistryError
from hub.files import private_dir
from hub.health.alarms import HubAlarms
from hub.health.checks import HubChecks
from hub.health.counters import HubCounters
from hub.health.metrics import Family
from hub.health.readiness import Readiness
from hub.health.sos_trace import SosTrace
from hub.ingest import hot_path
from hub.ingest.device_state import DeviceStates
from hub.ingest.gauges import Gauges
from hub.ingest.heap import FreeMemory, fix_mmap_threshold, settle_heap
from hub.ingest.lanes import LaneGuard
from hub.ingest.pipeline import Pipeline
from hub.ingest.priority import priority_topics
from hub.ingest.quarantine import Quarantine
from hub.ingest.retry import Redelivery
from hub.ingest.rule_clock import FILE_NAME as RULE_CLOCK_FILE
from hub.ingest.rule_clock import ClockFloor, read_floor
from hub.ingest.rule_clock import on_step as on_clock_step
from hub.ingest.rule_runtime import RuleRuntime
from hub.ingest.strangers import UnknownDevices
from hub.mqtt.client import HubMqttClient, Unhandled
from hub.notify.dispatch import Dispatcher
from hub.notify.routing import Routing
from hub.notify.webhooks import WebhookSender
from hub.records import AlertChange, alert_json
from hub.steps import run_in_turns
from hub.storage import community_pack
from hub.storage.cases import CaseStore
from hub.storage.community_copies import make_in_child, make_in_child_now
from hub.storage.nonces import ReplyNonces
from hub.storage.rule_state import RuleStateStore
from hub.storage.rule_state_file import RuleStateFile, path_beside
from hub.storage.store import Store
from hub.timeseries import QuarantinedLines, open_sink
from hub.web.api import Api
from hub.web.care import CareServices
from hub.web.server import HttpServer
from hub.web.stream import AlertBus
from rules.model import Rule
from rules.signals import Signal

log = logging.getLogger(__name__)

QUARANTINE_FLUSH_S = 1.0
#: The casework loop looks at least this often even with no deadline (a safety net).
CASEWORK_POLL_S = 5.0
CASEWORK_MAX_BACKOFF_S = 60.0
#: The retry queue's key for what rule timers decided but the store refused.
TIMER_TOPIC = "(rule timers)"
GAUGE_INTERVAL_S = 60.0
SUBSCRIBE_TIMEOUT_S = 10.0
#: The bulk lane reads this much per event-loop turn (≈ 160 sensor messages, ≈ 20 ms of work),
#: so a press on the priority lane and the notifications' PUBACKs never wait behind more.
#: 8 KiB cost 13–18 % more CPU per message (more turns, each with its end-of-turn work) for no
#: measurable gain in SOS latency (docs/benchmarks.md).
BULK_TURN_BYTES = 32 * 1024
#: ... and, by the rate the previous chunk was handled at, about this much time of work: bytes
#: alone let one turn last seconds when its messages were slow (store writes on a loaded
#: machine), with a press waiting behind it (docs/benchmarks.md, "SOS latency split").
BULK_TURN_S = 0.002


def _ignore(topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
    """The outbound connection subscribes to nothing."""


def import_community_file(store: Store, path: Path, *, data_dir: Path, at: float, topic_prefix: str) -> bool:
    """Import the registry file into the store unless the store already holds exactly this file.

    A restart with an unchanged file parses no YAML (seconds for thousands of devices): the
    registry is served from the store. Hashing the file costs milliseconds. Returns whether
    the file was parsed.
    """
    try:
        digest = file_digest(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the community file: {exc.strerror}", key="community_file", source=str(path)
        ) from None
    if imported_digest(data_dir) == digest and store.communities_count() > 0:
        return False
    communities = load_yaml(path)
    refuse_own_topics(communities, prefix=topic_prefix, file=str(path))
    # Idempotent: an unchanged community changes nothing; a changed one updates in place.
    store.save_communities(communities, at=at, source=str(path))
    mark_imported(data_dir, digest)  # the directory too: a PostgreSQL store makes none
    return True


def unknown_override_places(overrides: Mapping[str, Mapping[str, object]], registry: Registry) -> list[str]:
    """The ``community:``/``grid:``/``resident:`` selectors of ``overrides`` the registry lacks."""
    codes = {c.code for c in registry.communities}
    unknown: list[str] = []
    for selectors in overrides.values():
        for selector in selectors:
            kind, _, code = selector.partition(":")
            known = (
                code in codes
                if kind == "community"
                else registry.grid(code) is not None
                if kind == "grid"
                else registry.held_resident(code) is not None
            )
            if not known and selector not in unknown:
                unknown.append(selector)
    return unknown


def registry_from_store(store: Store, settings: Settings, *, at: float) -> tuple[Registry, str | None]:
    """The registry as the store holds it, after importing the community file if it changed.

    Also returns why the file was not imported, if it was refused: a community file broken
    by a typo or a half-finished copy must not take every community's SOS handling down at
    the next restart (after a power cut, nobody may be there to fix it). When the store holds
    an earlier good import, the hub starts on that one and says so at critical level and on
    ``/readyz``'s warnings (the console's banner); with nothing imported yet it stops, since
    it would know no device. ``linli doctor`` checks the file before a restart.
    """
    refused: str | None = None
    if settings.community_file is not None:
        try:
            import_community_file(
                store,
                settings.community_file,
                data_dir=Path(settings.data_dir),
                at=at,
                topic_prefix=settings.mqtt.topic_prefix,
            )
        except RegistryError as exc:
            if store.communities_count() == 0:
                raise
            refused = (
                f"the community file was refused ({exc}); the hub runs on the registry it last"
                " imported: fix the file and restart (linli doctor checks it)"
            )
            log.critical("%s", refused)
    # A large community without its start-up copy (just imported, or never copied) is copied
    # in a child first: read from its JSON here, the parse's holes stayed in the hub's heap
    # (hub.storage.community_copies.make_in_child_now).
    if store.copies_missing(at_least=community_pack.WORTH_BYTES):
        make_in_child_now(settings.store.resolved_url(Path(settings.data_dir)))
    # 10⁵ devices' objects, kept for the process's life: no collections while they are built,
    # none walking them after (frozen).
    with collector_paused(freeze=True):
        # Not strict: a store from before ids were checked across communities may hold a
        # shared one, and refusing to start would lose every community's SOS (Registry).
        # The residents' personal data kept packed as the copies are read (hub.community.personal).
        personal = PersonalData()
        communities, dropped = outside_own_topics(
            store.communities(personal=personal), prefix=settings.mqtt.topic_prefix
        )
        registry = Registry(
            communities=communities,
            unassigned=store.unassigned(),
            strict=False,
            personal=personal,
        )
    for sentence in dropped:
        # Imported before the check, or under another prefix: that root is not subscribed to.
        log.critical("registry: %s; not subscribed to until then", sentence)
        refused = f"{refused}; {sentence}" if refused else sentence
    for clash in registry.role_clashes:
        log.error("registry: %s; until then he acts only where his first role is", clash)
    for clash in registry.shared:
        log.error(
            "registry: %s; the later community keeps it and the other's messages from it are"
            " quarantined (community_mismatch): give one of them a new id and import again",
            clash,
        )
    return registry, refused


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

    def __init__(  # noqa: PLR0915 - the composition root: every part built in one place, in order
        self,
        *,
        settings: Settings,
        clock: Clock | None = None,
        registry: Registry | None = None,
        rules: Sequence[Rule] | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        fix_mmap_threshold()  # before the registry's large blocks (hub.ingest.heap)
        self.settings = settings
        if clock is None and settings.test_clock_start is not None:
            clock = ManualClock(start=settings.test_clock_start)
        self.clock = clock or SystemClock()
        # Escalation deadlines and notification retries are also tracked on this clock, so a
        # wall-clock step back does not hold them up. A manual clock's hub tracks nothing unless
        # a test gives it one: its time moves only when told, and the real monotonic clock would
        # count the test's own seconds as time passing.
        self.monotonic = monotonic or (None if isinstance(self.clock, ManualClock) else time.monotonic)
        #: The rules' event-time axis (receive stamps, rule timers): the clock, except that a step
        #: back of it is absorbed (hub.clock.SteadyClock), from where the last run got to
        #: (hub.ingest.rule_clock). Without a monotonic clock (a bare manual clock: tests, bench)
        #: it is the clock itself.
        self.rule_clock: Clock = self.clock
        self.clock_floor: ClockFloor | None = None
        if self.monotonic is not None:
            # A demo's clock is moved on by scenarios (hours in seconds): where it got to says
            # nothing about the next run's, whose rules would start hours ahead. No floor there.
            demo = isinstance(self.clock, DemoClock | ScaledClock)
            floor_path = Path(settings.data_dir) / RULE_CLOCK_FILE
            steady = SteadyClock(
                wall=self.clock,
                monotonic=self.monotonic,
                floor=None if demo else read_floor(floor_path),
                on_step=on_clock_step,
            )
            if steady.ahead:
                on_clock_step(steady.ahead, True)
            self.rule_clock = steady
            self.clock_floor = None if demo else ClockFloor(clock=steady, path=floor_path)
        # Elders' data and credentials live here: owner-only (hub.files).
        private_dir(Path(settings.data_dir), tighten=True)
        self.store = Store(url=settings.store.resolved_url(Path(settings.data_dir)))
        #: SQLite's checkpoints off the event loop once started (``None`` on PostgreSQL).
        self.checkpoints = self.store.checkpointer()
        #: Conditions of this start that someone must act on (``/readyz``'s warnings).
        self.start_warnings: list[str] = []
        if registry is None:
            registry, refused = registry_from_store(self.store, settings, at=self.clock.now())
            self.start_warnings.extend([refused] if refused else [])
        self.registry = registry
        self.bus = AlertBus()
        self.states = DeviceStates(subjects=registry.registered)
        self.quarantine = Quarantine(store=self.store, clock=self.clock)
        self.adapters = AdapterRouter(
            sources=[FamilySource(s.family, s.base_topic) for s in settings.sources]
            + community_sources(registry),
            profiles=load_profiles((BUILTIN_PROFILES, *settings.profile_paths))
            if settings.profile_paths
            else None,
        )
        self.policies = load_policies(settings.policies_file, zone=settings.timezone)
        self.start_warnings.extend([self.policies.zone_note] if self.policies.zone_note else [])
        self.routing = Routing(
            registry=registry,
            zone=settings.zone,
            topic_prefix=settings.mqtt.topic_prefix,
            calendar=self.policies.calendar,
        )
        # Seeding and restoring 10⁵ absence deadlines: no collections meanwhile, frozen after.
        with collector_paused(freeze=True):
            self.rule_runtime = RuleRuntime(
                rule_paths=settings.rule_paths,
                rules=rules,
                overrides=settings.rule_overrides,
                zone=settings.timezone,
                registry=registry,
                state_store=RuleStateStore(
                    store=self.store,
                    community_of=lambda s: registry.subject(s).community,
                    # SQLite: written off the event loop, in a file beside the store's.
                    file=None
                    if self.store.path is None
                    else RuleStateFile(path=path_beside(self.store.path)),
                ),
                clock=self.rule_clock,
            )
        self.evaluator = self.rule_runtime.evaluator
        self.caught_up = self.rule_runtime.caught_up
        for place in unknown_override_places(settings.rule_overrides, registry):
            # Started all the same (a typo must not stop SOS handling), and said (review: the
            # elder's stricter threshold silently applied to nobody).
            warning = (
                f"rule_overrides: {place} is in no community of the registry: that override applies to nobody"
            )
            log.error("%s", warning)
            self.start_warnings.append(warning)
        reply_topics = ReplyTopics(prefix=settings.mqtt.topic_prefix)
        # Clustered (cluster.node_id + PostgreSQL): each owned community has its own session.
        self.cluster = cluster_runtime(
            settings=settings,
            store=self.store,
            registry=registry,
            on_message=self._on_message,
            on_unhandled=self._hold,
            reply_subscription=lambda community: reply_topics.topic(community, "+"),
            rules=self.rule_runtime,
            wake_casework=lambda: self._casework_wake.set(),  # noqa: PLW0108 - the event is made below
            on_remote=self._remote_change,
        )
        tls_ca = str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None
        #: Stamps of the SOS path (lane receive, alert, case filed, published): bench.latency reads them.
        self.sos_trace = SosTrace()
        self.lanes, self.priority = self._lanes(tls_ca)
        self.mqtt = HubMqttClient(
            url=settings.mqtt.parsed_url,
            client_id=settings.mqtt.client_id,
            on_message=self.lanes.bulk,
            subscriptions=[]
            if self.cluster
            else [*self.adapters.subscriptions(), reply_topics.subscription()],
            tls_ca_file=tls_ca,
            on_unhandled=self._hold,
            turn_bytes=BULK_TURN_BYTES,
            turn_s=BULK_TURN_S,
            # A press waiting on the SOS lane goes before the next bulk chunk.
            defer_to=self.priority.waiting if self.priority is not None else None,
        )
        # Notifications leave on their own connection: on the ingest connection their PUBACKs
        # would queue behind any backlog of sensor traffic, delaying an SOS notification.
        self.outbound = HubMqttClient(
            url=settings.mqtt.parsed_url,
            client_id=f"{settings.mqtt.client_id}-out",
            on_message=_ignore,
            subscriptions=[],
            tls_ca_file=tls_ca,
        )
        self.webhooks = WebhookSender(secrets=settings.channel_secrets, zone=settings.zone)
        self.dispatcher = Dispatcher(
            store=self.store,
            mqtt=self.outbound,
            clock=self.clock,
            webhooks=self.webhooks,
            scope=self.cluster.scope if self.cluster else lambda: None,
            on_published=self.sos_trace.published,
            monotonic=self.monotonic,
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
            policies=self.policies,
            clock=self.clock,
            zone=settings.zone,
            series=self.timeseries,
            on_notifications=self.dispatcher.wake,
            on_change=self._case_changed,
            preferences=load_preferences(settings.channels_file),
            reply_topic=reply_topics.topic,
            on_retry=self._casework_wake.set,
            on_case_failed=self._case_failed,
            on_alert_failed=self._alert_failed,
            scope=self.cluster.scope if self.cluster else lambda: None,
            monotonic=self.monotonic,
        )
        care, care_refused = site_care_or_defaults(settings.community_file, registry)
        self.start_warnings.extend([care_refused] if care_refused else [])
        self.visits = Visits(
            store=self.store,
            registry=registry,
            care=care,
            casework=self.casework,
            routing=self.routing,
            clock=self.clock,
            zone=settings.timezone,
            on_alert_change=self._alert_changed,
            on_notifications=self.dispatcher.wake,
            series=self.timeseries,
        )
        self.reply_keys = ReplyKeys(path=settings.reply_keys_file)
        self.replies = Replies(
            topics=reply_topics,
            casework=self.casework,
            on_bad_reply=self._bad_reply,
            keys=self.reply_keys,
            nonces=ReplyNonces(store=self.store),
            clock=self.clock,
            window_s=settings.replies.window_s,
        )
        self.pipeline = Pipeline(
            adapters=self.adapters,
            registry=registry,
            evaluator=self.evaluator,
            store=self.store,
            routing=self.routing,
            clock=self.rule_clock,
            quarantine=self.quarantine,
            states=self.states,
            on_notifications=self.dispatcher.wake,
            max_payload_bytes=settings.mqtt.max_payload_bytes,
            series=self.timeseries,
            on_alert_change=self._alert_changed,
            on_state_change=self.rule_runtime.state_changed,
            strangers=UnknownDevices(
                registry=registry,
                store=self.store,
                quarantine=self.quarantine,
                max_listed=settings.unknown_devices.max_listed,
                max_prefixes=settings.unknown_devices.max_prefixes,
            ),
            unknown_burst_s=settings.unknown_devices.burst_s,
            # The elder's door, PIR or green key completes his daily sign of life (每日平安).
            on_event=self.visits.on_event,
            on_event_kinds=ANY_SIGN,
        )
        self.alarms = HubAlarms(
            outbound=self.outbound,
            topic=self.routing.command_centre_topic,
            held=lambda: self.redelivery.depth,
            clock=self.clock,
        )
        self.redelivery = Redelivery(
            handle=self._handle,
            clock=self.clock,
            on_stuck=self.alarms.stuck,
            on_recovered=self.alarms.recovered,
        )
        self.gauges = Gauges(
            instance=settings.mqtt.client_id,
            registry=registry,
            states=self.states,
            open_cases=self.casework.open_counts_steps,
            pipeline=self.pipeline.stats,
            quarantine=self.quarantine,
            series=self.timeseries,
        )
        self.evaluations = Evaluations(
            casework=self.casework,
            store=self.store,
            keys=ReplyKeys(path=Path(settings.data_dir) / LINK_KEY_FILE),
            clock=self.clock,
        )
        self.guardian_links = GuardianLinks(
            evaluations=self.evaluations,
            elder_of=self.visits.elder_of,
            whole=self.registry.whole,
            preferences=load_preferences(settings.channels_file),
            store=self.store,
            clock=self.clock,
            public_url=settings.http.public_url,
        )
        self.checks, self.counters = self._health(settings)
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
            readiness=self.readiness,
            metrics=self.counters.family_steps,
            rules=lambda: self.rules,
            advance_clock=self.advance_clock if isinstance(self.clock, ManualClock | DemoClock) else None,
            http=settings.http,
            care=CareServices(evaluations=self.evaluations, visits=self.visits, states=self.states),
        )
        self.http = HttpServer(
            app=self.api.app(),
            host=settings.http.host,
            port=settings.http.port,
            max_connections=settings.http.max_connections,
            max_connections_per_address=settings.http.max_connections_per_address,
            trusted_proxies=settings.http.trusted_proxies,
            on_stop=self.api.close_streams,
        )
        #: When the casework loop last started a round (event-loop monotonic time): readiness checks it beats.
        self.casework_beat: float | None = None
        self.loop_lag_s = 0.0
        self.free_memory = FreeMemory()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.http_port: int | None = None

    def _health(self, settings: Settings) -> tuple[HubChecks, HubCounters]:
        """What ``/readyz`` asks and what ``/metrics`` reads, over the parts built above."""
        checks = HubChecks(
            mqtt=self.mqtt,
            outbound=self.outbound,
            store=self.store,
            store_path=self.store.path or Path(settings.data_dir) / STORE_FILE,
            redelivery=self.redelivery,
            min_free_bytes=settings.min_free_disk_mb * 1024 * 1024,
            casework_beat=lambda: self.casework_beat,
            casework_period_s=CASEWORK_POLL_S,
            dispatcher=self.dispatcher,
            rule_runtime=self.rule_runtime,
            timeseries=self.timeseries,
            calendar=lambda: self.policies.calendar,
            unopened=lambda: self.casework.unopened,
            start_warnings=self.start_warnings,
            priority=self.priority,
            clock=self.clock,
        )
        counters = HubCounters(
            pipeline=self.pipeline,
            mqtt=self.mqtt,
            redelivery=self.redelivery,
            dispatcher=self.dispatcher,
            timeseries=self.timeseries,
            quarantine=self.quarantine,
            casework=self.casework,
            loop_lag_s=lambda: self.loop_lag_s,
            stream_clients=lambda: len(self.bus),
            stream_dropped=lambda: self.bus.dropped,
            http_connections=lambda: self.http.open_connections,
            http_refused=lambda: self.http.limits.refused,
            http_refused_per_address=lambda: self.http.limits.refused_per_address,
            http_deadline_closes=lambda: self.http.limits.deadline_closes,
            clock=self.clock,
            http_auth_failures=lambda: self.api.throttle.failures,
            http_auth_throttled=lambda: self.api.throttle.refused,
        )
        return checks, counters

    def _lanes(self, tls_ca: str | None) -> tuple[LaneGuard, HubMqttClient | None]:
        """The SOS priority lane (hub/ingest/lanes.py) and the guard both lanes hand messages to.

        The SOS-capable devices' topics on a connection of their own, so a press never queues
        behind the bulk backlog. Not in a cluster: there each community's session would need
        its own lane that follows the lease (docs/benchmarks.md).
        """
        self.lanes = LaneGuard(
            handler=self._on_message,
            clock=self.clock,
            repeats=lambda: self.pipeline.stats.occurrences_repeated,
        )
        use = self.settings.mqtt.priority_lane and not self.cluster
        return self.lanes, self._priority_lane(tls_ca) if use else None

    def _priority_lane(self, tls_ca: str | None) -> HubMqttClient | None:
        """The lane's own persistent session (``<client id>-sos``): presses wait at the broker for it too.

        ``None`` when no registered device is SOS-capable on a family the lane covers.
        """
        hub_wide = [FamilySource(s.family, s.base_topic) for s in self.settings.sources]
        topics = priority_topics(self.registry, hub_wide)
        if not topics:
            return None
        self.lanes.share(topics)  # before subscribing: a copy that came only to the bulk lane is owed
        return HubMqttClient(
            url=self.settings.mqtt.parsed_url,
            client_id=f"{self.settings.mqtt.client_id}-sos",
            on_message=self._priority_message,
            subscriptions=topics,
            tls_ca_file=tls_ca,
            on_unhandled=self._hold,
        )

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.rule_runtime.rules

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

    def _priority_message(
        self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False
    ) -> None:
        self.sos_trace.received()
        try:
            self.lanes.priority(topic, payload, qos, retain, dup)
        finally:
            self.sos_trace.handled()

    def _on_message(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False) -> None:
        if self.redelivery.holds(topic):
            raise MessageDeferred(topic)  # keep the device's order: behind its held message
        self._handle(topic, payload, qos, retain, dup)

    def _handle(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool = False) -> None:
        if not self.replies.handle(topic, payload, retain):
            self.pipeline.handle(topic, payload, qos, retain, dup)

    def _hold(self, message: Unhandled) -> None:
        self.redelivery.hold(message)

    def _alert_changed(self, change: AlertChange) -> None:
        """A committed alert change: to the live console, then to casework (same call, before PUBACK)."""
        self.bus.publish({"type": "alert", "created": change.created, "alert": alert_json(change.alert)})
        if self.cluster:
            self.cluster.changed(Kind.ALERT, change.alert.id, created=change.created)
        # An inactivity alert raises the elder's visit to urgent (and still becomes a case).
        self.sos_trace.alert(change)
        self.visits.on_alert_change(change)
        self.casework.on_alert_change(change)
        self.sos_trace.filed(change)

    def flush_rule_state(self, *, include_routine: bool = False) -> int:
        return self.rule_runtime.flush(include_routine=include_routine)

    def reload_rules(self) -> int:
        """Load the packs again; state of rules that still exist is kept. Bad packs change nothing."""
        return self.rule_runtime.reload()

    async def advance_clock(self, to: float) -> float:
        """Scenario testing: move the manual clock to ``to`` and do everything due by then.

        Rule timers and escalation steps fire in time order (each step advances to the next
        deadline), and the call returns once the notifications they queued were delivered.
        """
        assert isinstance(self.clock, ManualClock | DemoClock)
        if to < self.clock.now():
            if isinstance(self.clock, ManualClock):
                raise ValueError("time does not run backwards")
            # The demo's clock runs on between a scenario's steps: a step it already passed is done.
            to = self.clock.now()
        previous: float | None = None
        while True:
            deadlines = [
                d
                for d in (
                    self.evaluator.next_due(),
                    self.casework.next_deadline(),
                    self.visits.next_deadline(),
                )
                if d is not None
            ]
            step = max(min([to, *deadlines]), self.clock.now())
            if step == previous:
                # A deadline that does not move on after its work ran: go straight to ``to``.
                step = to
            self.clock.set(step)
            self.run_due_rules()
            self.casework.tick()
            self.visits.tick()
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
        return self.rule_runtime.run_due(self._apply_timer_signals)

    def _apply_timer_signals(self, signals: Sequence[Signal]) -> None:
        if self.cluster:
            signals = owned_signals(signals, registry=self.registry, owned=self.cluster.scope())
        try:
            self.pipeline.apply_signals(signals)
        except NotStoredError as exc:
            # The timers have fired (the evaluator moved on): keep what they decided until stored.
            self.redelivery.hold(Unhandled(TIMER_TOPIC, b"", 0, False, None, exc))

    def _bad_reply(self, topic: str, reason: str, detail: str, payload: bytes) -> None:
        self.quarantine.add(topic=topic, reason=reason, detail=detail, payload=payload, at=self.clock.now())

    def _case_failed(self, case_id: str, reason: str) -> None:
        self.quarantine.add(
            topic=f"case:{case_id}", reason="case_failed", detail=reason, payload=b"", at=self.clock.now()
        )

    def _alert_failed(self, alert_id: int, reason: str) -> None:
        self.quarantine.add(
            topic=f"alert:{alert_id}",
            reason="case_not_opened",
            detail=reason,
            payload=b"",
            at=self.clock.now(),
        )

    def _case_changed(self, case: Case) -> None:
        if self.bus.listening:  # the case's view (its traffic lights) only for a live console
            self.bus.publish({"type": "case", "case": self.casework.case_json(case)})
        if self.cluster:
            self.cluster.changed(Kind.CASE, case.id)
        if self.guardian_links.on_case_changed(case):  # closed: the guardian's 评价 link, once
            self.dispatcher.wake()
        self._casework_wake.set()

    def _remote_change(self, change: Change) -> None:
        """Another node's alert or case change (hub/cluster/events.py): read it, show it live here."""
        if change.kind is Kind.ALERT:
            alert = self.store.alert(int(change.id))
            if alert is not None:
                self.bus.publish({"type": "alert", "created": change.created, "alert": alert_json(alert)})
        elif (case := self.casework.load(change.id)) is not None:
            self.bus.publish({"type": "case", "case": self.casework.case_json(case)})

    def readiness(self) -> Readiness:
        """Every condition an SOS depends on (``/readyz``): :class:`~hub.health.checks.HubChecks`."""
        return self.checks.readiness()

    def metrics(self) -> list[Family]:
        """The hub's counters for ``/metrics``: :class:`~hub.health.counters.HubCounters`."""
        return self.counters.families()

    def stats(self) -> dict[str, Any]:
        return {
            "pipeline": asdict(self.pipeline.stats),
            "quarantine": dict(self.quarantine.counts),
            "quarantine_pruned": self.quarantine.pruned,
            "devices_seen": len(self.states),
            "unassigned_devices": len(self.registry.unassigned),
            "notifications_delivered": self.dispatcher.delivered,
            "notification_failures": self.dispatcher.failed_attempts,
            "mqtt_connected": self.mqtt.connected.is_set(),
            "mqtt_subscribed": self.mqtt.subscribed.is_set(),
            "mqtt_outbound_connected": self.outbound.connected.is_set(),
            # The SOS priority lane: its topics, what each lane handled, copies skipped.
            "priority_lane": {
                "topics": len(self.lanes.topics),
                "connected": self.priority is not None and self.priority.connected.is_set(),
                "subscribed": self.priority is not None and self.priority.subscribed.is_set(),
                "handled": dict(self.lanes.handled),
                "copies_skipped": self.lanes.skipped,
                "cold_copies_recognised": self.lanes.cold_copies,
            },
            "mqtt_handler_errors": self.mqtt.handler_errors,
            "mqtt_reconnects": self.mqtt.reconnects,
            # The hub's own retry queue: messages not recorded yet (disk full, database locked).
            "held_messages": self.redelivery.depth,
            "held_since": self.redelivery.oldest_since,
            "cases_failing": len(self.casework.failing),
            "alerts_without_case": len(self.casework.unopened),
            "store_checkpoints": None
            if self.checkpoints is None
            else {
                "rounds": self.checkpoints.rounds,
                "failures": self.checkpoints.failures,
                "busy": self.checkpoints.busy,
                "handed_over": self.checkpoints.handed_over,
                "log_frames": self.checkpoints.log_frames,
            },
            "replies": self.replies.handled,
            "timeseries": asdict(self.timeseries.stats),
            # Freed heap memory handed back to the system (hub.ingest.heap.FreeMemory).
            "heap_trim": {
                "available": self.free_memory.available,
                "runs": self.free_memory.runs,
                "released_mb": round(self.free_memory.released_bytes / (1 << 20), 1),
                "longest_ms": round(self.free_memory.longest_s * 1000, 1),
            },
            "stream_listeners": len(self.bus),
            "stream_dropped": self.bus.dropped,
            # Which build runs the per-message path: mypyc-compiled or pure (hub.ingest.hot_path).
            "hot_path": hot_path.describe(),
            # The rules' clock (hub.clock.SteadyClock): seconds ahead of the wall clock while it
            # absorbs a step back, steps back seen, floor writes that failed.
            "rule_clock": None
            if not isinstance(self.rule_clock, SteadyClock)
            else {
                "ahead_s": round(self.rule_clock.ahead, 3),
                "steps_back": self.rule_clock.steps_back,
                "floor_failures": self.clock_floor.failures if self.clock_floor is not None else 0,
            },
        }

    async def start(self) -> None:
        if not self.settings.api_tokens:
            log.warning("no API tokens configured: the API and console will refuse every request")
        # uvicorn in this loop, as the named task "linli-http"; port 0 picks a free port.
        self.http_port = await self.http.start()
        await self.timeseries.start()  # replays what a crash left in the spool
        if self.checkpoints is not None:
            # First, so no SOS commit of this run pays for a checkpoint (hub.storage.checkpoints).
            self._tasks.append(asyncio.create_task(self.checkpoints.run(), name="linli-store-checkpoints"))
        # Deliver what an earlier run left pending before anything new arrives.
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="linli-dispatcher"))
        # Cases for alerts a crash left without one, then whatever fell due while we were down.
        self.casework.reconcile()
        self.casework.tick()
        self._tasks.append(asyncio.create_task(self._run_casework(), name="linli-casework"))
        self._tasks.append(asyncio.create_task(self._flush_quarantine(), name="linli-quarantine-flush"))
        self._tasks.append(asyncio.create_task(self._gauges(), name="linli-gauges"))
        self._tasks.append(asyncio.create_task(self.redelivery.run(), name="linli-ingest-retry"))
        # What building the hub freed (the registry's rows, the rule state read: tens of MB at
        # scale) goes back to the system now, while no MQTT message can be waiting on the trim.
        self.free_memory.release()
        # Outbound first; the SOS lane before the bulk lane: a press queued for both comes there first.
        sessions = [self.outbound, *([self.priority] if self.priority is not None else []), self.mqtt]
        connecting: asyncio.Task[None] | None = None
        try:
            for session in sessions:
                await session.connect()
        except BrokerUnreachableError as exc:
            # After a power cut the broker may come up after the hub. Exiting here left the
            # hub down for good once its supervisor gave up restarting it (systemd: five
            # failures in ten seconds); it runs instead, not ready (/readyz says which
            # session is down), and connects once the broker is there.
            log.error("%s; the hub keeps trying and is not ready until connected", exc)
            connecting = asyncio.create_task(self._connect_later(sessions), name="linli-mqtt-connect")
            self._tasks.append(connecting)
        else:
            await self._suback_or_note()
        if self.cluster:
            self.cluster.start()  # the lease loop opens the owned communities' sessions
        runtime = self.rule_runtime
        timers = runtime.run_timers(self._apply_timer_signals, lambda: self.pipeline.stats.messages)
        self._tasks.append(asyncio.create_task(self._after(connecting, timers), name="linli-rule-timers"))
        runtime.remember_files()
        self._tasks.append(asyncio.create_task(runtime.watch(), name="linli-rule-watch"))
        self._tasks.append(asyncio.create_task(runtime.flush_routine(), name="linli-rule-state"))
        if self.clock_floor is not None:
            self._tasks.append(asyncio.create_task(self.clock_floor.run(), name="linli-rule-clock"))
        # Care visits last: their first round (50 000 elders at 100 000 devices) runs in slices
        # beside ingest once the hub is ready, never ahead of it (docs/benchmarks.md, restart).
        self._tasks.append(
            asyncio.create_task(self._after(connecting, self.visits.run()), name="linli-visits")
        )
        if self.store.copies_wanted:
            # The next start reads the registry from these copies (hub.storage.community_copies).
            self._tasks.append(asyncio.create_task(self._make_copies(), name="linli-community-copies"))
        # The rule engine and registry are loaded: keep the collector off these long-lived objects.
        settle_heap()
        # … and hand back what building them freed, once the backlog is worked off, then now and then.
        self._tasks.append(
            asyncio.create_task(self.free_memory.run(settled=self.caught_up), name="linli-heap-trim")
        )
        build = hot_path.describe()
        log.info(
            "hub running: MQTT %s, HTTP http://%s:%s, %d rules, %d devices registered, hot path %s (%d/%d compiled)",
            self.settings.mqtt.parsed_url.redacted(),
            self.settings.http.host,
            self.http_port,
            len(self.rules),
            sum(len(c.devices) for c in self.registry.communities),
            build["build"],
            build["compiled"],
            build["modules"],
        )
        if build["build"] == "mixed":
            # Some extensions of a compiled build did not load (a partial install or copy): the
            # hub works either way, but it is not the build that was measured or tested.
            log.warning("hot path: only %d of %d modules run compiled", build["compiled"], build["modules"])

    async def _connect_later(self, sessions: Sequence[HubMqttClient]) -> None:
        """Each session not connected yet, in order, as soon as the broker can be reached."""
        for session in sessions:
            await session.connect_until_up()
        log.info("connected to the MQTT broker")
        await self._suback_or_note()

    async def _suback_or_note(self) -> None:
        """Wait for the bulk lane's SUBACK, up to :data:`SUBSCRIBE_TIMEOUT_S`; a late one is noted."""
        try:
            await asyncio.wait_for(self.mqtt.subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            self._no_suback_yet(self.mqtt.received)

    @staticmethod
    async def _after(connecting: asyncio.Task[None] | None, loop: Coroutine[Any, Any, None]) -> None:
        """``loop`` once the broker is connected: timers and visits judge what the broker kept
        for the hub (a door opened while it was away) after it arrived, as on a normal start."""
        try:
            if connecting is not None:
                await asyncio.shield(connecting)
        except BaseException:
            loop.close()  # never started: no "coroutine was never awaited" warning
            raise
        await loop

    def _no_suback_yet(self, arrived: int) -> None:
        """The bulk lane's SUBACK is late. Start goes on either way (the rule timers still wait
        for the stream to go quiet, :meth:`RuleRuntime.run_timers`).

        A persistent session's queued messages come before the SUBACK: Mosquitto delivers
        what it kept for the session on CONNECT, then answers the SUBSCRIBE. Messages that
        arrive meanwhile show that the session works and the SUBACK is only behind the backlog
        of a long downtime, so this is not an error. No message and no SUBACK is one.
        """
        if arrived > 0:
            log.info(
                "SUBACK not in after %.0f s: the broker is delivering what it queued while the hub "
                "was away first (%d message(s) so far); going on",
                SUBSCRIBE_TIMEOUT_S,
                arrived,
            )
        else:
            log.error(
                "no SUBACK from the broker within %.0f s; messages may not arrive yet", SUBSCRIBE_TIMEOUT_S
            )

    async def _make_copies(self) -> None:
        await make_in_child(self.settings.store.resolved_url(Path(self.settings.data_dir)))

    async def _run_casework(self) -> None:
        """Escalation steps, reminders and 督办 at their deadlines (persisted, so they survive restarts)."""
        failures = 0
        while True:
            self._casework_wake.clear()
            self.casework_beat = asyncio.get_running_loop().time()
            try:
                # Any active alert without a case (a failed or interrupted open) gets one now.
                self.casework.reconcile()
                self.casework.tick()
                next_at = self.casework.next_deadline()
            except Exception:
                # The store itself failed (each case is isolated inside tick): back off for real.
                failures += 1
                timeout = min(CASEWORK_MAX_BACKOFF_S, CASEWORK_POLL_S * 2 ** (failures - 1))
                log.exception("casework round failed; retrying in %.0f s", timeout)
                await asyncio.sleep(timeout)
                continue
            failures = 0
            waits = [CASEWORK_POLL_S]
            if next_at is not None:
                waits.append(wall_delay(self.clock, max(0.0, next_at - self.clock.now())))
            # After a step back the wall-clock wait is the step too long: a deadline is due by
            # the monotonic clock then.
            if (monotonic := self.casework.monotonic_wait()) is not None:
                waits.append(monotonic)
            timeout = min(waits)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._casework_wake.wait()

    async def _flush_quarantine(self) -> None:
        """Once a second; a store that refuses (disk full) is tried again, the records kept meanwhile."""
        failures = 0
        while True:
            await asyncio.sleep(min(CASEWORK_MAX_BACKOFF_S, QUARANTINE_FLUSH_S * 2**failures))
            try:
                self.quarantine.flush()
            except Exception:
                failures = min(failures + 1, 6)
                log.exception("quarantine not flushed to the store; kept in memory, retrying")
            else:
                failures = 0

    async def _gauges(self) -> None:
        """Periodic gauges for the dashboards: the fleet per grid and kind, hub self-metrics."""
        lag = 0.0
        while True:
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(GAUGE_INTERVAL_S)
            lag = max(0.0, asyncio.get_running_loop().time() - started - GAUGE_INTERVAL_S)
            self.loop_lag_s = lag
            await run_in_turns(self.gauges.write_steps(self.clock.now(), loop_lag_ms=lag * 1000))

    def write_gauges(self, *, loop_lag_ms: float = 0.0) -> None:
        self.gauges.write(self.clock.now(), loop_lag_ms=loop_lag_ms)

    async def stop(self) -> None:
        """Ordered: stop intake → cancel and await the loops → stop HTTP → flush → close the store.

        Intake stops first, so nothing new is acknowledged; a message not yet acknowledged is
        redelivered by the broker to the next run (its session persists). The callbacks the last
        messages scheduled (the rule-state flush) run before the loops are cancelled, and the
        final flushes run before the store closes: nothing writes to a closed store.
        """
        if self.cluster:
            # Per-community sessions closed and rule state written under the lease, then the
            # leases released: the other nodes take over now, not after lease_s.
            await self.cluster.stop()
        for intake in (self.priority, self.mqtt):
            if intake is None:
                continue
            try:
                await intake.disconnect()
            except Exception:
                log.exception("error while disconnecting from MQTT")
        await asyncio.sleep(0)  # callbacks the last messages scheduled run now, on an open store
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
        try:
            await self.http.stop()  # ends event streams first, then lets requests finish
        except Exception:
            log.exception("HTTP server did not stop cleanly")
        # Notifications leave on their own session: it stays up until the dispatcher has stopped.
        try:
            await self.outbound.disconnect()
        except Exception:
            log.exception("error while disconnecting from MQTT")
        await self.webhooks.close()
        try:
            await self.timeseries.stop()  # flushes to the server, or to the spool
        except Exception:
            log.exception("time-series sink did not stop cleanly")
        self.close()

    def close(self) -> None:
        """The last flushes, then the store closes; also for a hub that never started (tools, bench).

        Idempotent. A flush the store refuses is logged (the rule state is rebuilt from the
        deadlines it had; quarantine records are lost with the process) and the store still closes.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.quarantine.flush()
        except Exception:
            log.exception("quarantine not flushed on stop (the store refused)")
        if self.clock_floor is not None:
            self.clock_floor.write()  # where the rules' clock got to, for the next start
        try:
            self.rule_runtime.close()  # later scheduled flushes do nothing
        except Exception:
            log.exception("rule state not flushed on stop (the store refused)")
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
