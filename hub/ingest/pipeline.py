"""The hot path: one MQTT message → events → rule signals → stored alerts and queued notifications.

``Pipeline.handle`` is synchronous and runs inside the MQTT client's receive callback: no
task per message, no awaiting. It returns only after anything an alert needs is committed
to the store, so the QoS 1 PUBACK that follows it (see :mod:`hub.mqtt_client`) never
acknowledges an SOS that is not yet recorded. Bad input is quarantined with its reason and
never raises; only a store failure propagates (so the message is redelivered).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from adapters.errors import DecodeError
from adapters.events import IMPLAUSIBLE, Event, EventKind
from adapters.router import AdapterRouter
from hub.clock import Clock, SteadyClock
from hub.community.registry import Registry
from hub.errors import NotStoredError
from hub.ingest.alerts import record_signal
from hub.ingest.device_state import DeviceState, DeviceStates
from hub.ingest.quarantine import Quarantine
from hub.ingest.strangers import GROUP, UnknownDevices
from hub.mqtt.roundtrip import is_probe
from hub.notify.routing import Routing
from hub.records import AlertChange
from hub.storage.store import Store
from hub.timeseries import EventSeries, TimeseriesSink, alert_point, alert_transition
from rules.evaluator import Evaluator
from rules.model import Severity
from rules.signals import Signal, SignalAction
from rules.subject import Subject

log = logging.getLogger(__name__)

#: The quarantine reason of a reading a decoder dropped as impossible (counted apart).
IMPLAUSIBLE_VALUE = "implausible_value"

#: Presses are moments, not states: a retained copy replayed on (re)subscribe is not a new press.
_MOMENTARY = frozenset({EventKind.SOS_PRESS, EventKind.SERVICE_REQUEST, EventKind.BUTTON_PRESS})
_HEALTH = frozenset({EventKind.BATTERY, EventKind.SIGNAL, EventKind.HEARTBEAT})
_DOOR_OPEN = EventKind.DOOR_OPEN
_DOOR_CLOSED = EventKind.DOOR_CLOSED
_HEARTBEAT = EventKind.HEARTBEAT
#: Families whose reports carry a device's whole state, not only its changes: a door state
#: repeated there is no new edge. Zigbee2MQTT sends ``contact`` with every report, Tasmota's
#: ``tele`` SENSOR/STATE every teleperiod, and a LoRaWAN door sensor's periodic uplink decodes
#: to the same fields as the one a movement sent (Browan TBDW100 ``status``, Milesight WS301
#: ``magnet_status``, Dragino LDS02 ``DOOR_OPEN_STATUS``, Adeunis's keep-alive frame). Native
#: events stay edges: their protocol sends one per opening.
_STATE_REPEATING = frozenset({"zigbee2mqtt", "tasmota", "ttn_v3", "chirpstack_v3", "chirpstack_v4"})
# Read per event as module constants (CPython 3.11's ``EnumClass.MEMBER`` takes a slow path).
_BATTERY = EventKind.BATTERY
_SIGNAL = EventKind.SIGNAL
#: What a gateway node reports about itself holds for the devices behind it.
_NODE_KINDS = frozenset({EventKind.ONLINE, EventKind.OFFLINE, EventKind.HEARTBEAT, EventKind.SIGNAL})
#: The only family whose node speaks for sub-devices addressed ``node/child`` (Tasmota's LWT
#: and STATE for ``node/switch1``, ``node/0x662E``). The registry keeps no family per device
#: (``model``/``profile`` name a vendor mapping, not the transport), so the family is fixed
#: here: a Zigbee2MQTT friendly name may contain ``/`` too, and a native topic names any id,
#: so forwarding for every family let ``zigbee2mqtt/<node>/availability`` or
#: ``linli/<any community>/devices/<node>/events`` keep a Tasmota node's children alive.
_NODE_FAMILY = "tasmota"
#: The family whose topic names a community (``linli/<community>/devices/<id>/events``).
NATIVE_FAMILY = "native"
#: At most one time-series point per device and health kind per this many seconds.
HEALTH_SERIES_INTERVAL_S = 300.0


@dataclass(slots=True)
class PipelineStats:
    messages: int = 0
    events: int = 0
    signals: int = 0
    alerts_raised: int = 0
    quarantined: int = 0
    retained_presses_skipped: int = 0
    unknown_device_events: int = 0
    #: Raises of unknown devices counted into their group's open alert (no new notification).
    unknown_presses_grouped: int = 0
    #: Native events whose topic names another community than the device's registration.
    community_mismatches: int = 0
    #: Raises/updates the store dropped as an occurrence it had recorded (a redelivered message).
    occurrences_repeated: int = 0
    #: Presses in new messages no newer than the device's previous press (a stuck or reset
    #: device clock): handled at the hub's receive time instead of dropped as a copy.
    presses_restamped: int = 0
    #: Events whose time-series points failed (a bug in a point builder or a sink): charted
    #: nowhere, but their rules ran.
    series_errors: int = 0
    #: Events a decoder kept without an impossible reading (``attrs.implausible``): each is
    #: also quarantined as ``implausible_value``, while the rest of its report counted.
    implausible_readings: int = 0
    #: ``linli doctor``'s round-trip probes received (:mod:`hub.mqtt.roundtrip`), not quarantined.
    doctor_probes: int = 0


#: Per first topic level: ``(topic prefix, community)`` of the community-owned roots under it.
OwnedRoots = dict[str, tuple[tuple[str, str], ...]]


def root_claim(roots: OwnedRoots, topic: str) -> str | None:
    """The community whose own gateway root ``topic`` is under (``None``: a hub-wide root)."""
    for prefix, community in roots.get(topic.split("/", 1)[0], ()):
        if topic.startswith(prefix):
            return community
    return None


def owned_roots(registry: Registry) -> OwnedRoots:
    """Every community's own gateway roots, by their first topic level, most specific first.

    Keyed by the first level (as the adapter router is): a district of 999 communities has
    ≈ 6 000 roots, and a message must not be compared with each of them.
    """
    roots = {
        (f"{root}/", community.code)
        for community in registry.communities
        for source in community.sources
        for root in source.as_family_source(community.code).roots()
    }
    by_level: dict[str, list[tuple[str, str]]] = {}
    for prefix, code in roots:
        by_level.setdefault(prefix.split("/", 1)[0], []).append((prefix, code))
    return {
        level: tuple(sorted(entries, key=lambda entry: (-len(entry[0]), entry)))
        for level, entries in by_level.items()
    }


class Pipeline:
    def __init__(
        self,
        *,
        adapters: AdapterRouter,
        registry: Registry,
        evaluator: Evaluator,
        store: Store,
        routing: Routing,
        clock: Clock,
        quarantine: Quarantine,
        states: DeviceStates,
        on_notifications: Callable[[], None],
        max_payload_bytes: int,
        series: TimeseriesSink,
        on_alert_change: Callable[[AlertChange], None],
        on_state_change: Callable[[], None],
        strangers: UnknownDevices,
        unknown_burst_s: float = 600.0,
        on_event: Callable[[Event, bool], None] | None = None,
        on_event_kinds: frozenset[EventKind] | None = None,
    ) -> None:
        #: Told of every registered device's event (care's daily sign of life), with ``retain``;
        #: of those of ``on_event_kinds`` only, where given. The listener is pure Python: asked
        #: here, most events (battery, link quality, parking) skip an interpreted call each.
        self._on_device_event = on_event
        self._on_event_kinds = on_event_kinds
        self._strangers = strangers
        self._unknown_burst_s = unknown_burst_s
        self._on_state_change = on_state_change
        self._series = series
        self._event_series = EventSeries()
        self._on_alert_change = on_alert_change
        self._adapters = adapters
        self._registry = registry
        self._evaluator = evaluator
        self._store = store
        self._routing = routing
        self._clock = clock
        #: The rules' clock when it is a steady one (a running hub; see ``handle``).
        self._steady = clock if isinstance(clock, SteadyClock) else None
        self._quarantine = quarantine
        self._states = states
        self._on_notifications = on_notifications
        self._max_payload = max_payload_bytes
        self.stats = PipelineStats()
        self._message: tuple[str, bytes, bool] = ("", b"", False)
        #: Quarantine records of the message in hand, made once it is handled (``handle``).
        self._owed: list[tuple[str, str, str, bytes, float]] = []
        self._owned_roots = owned_roots(registry)

    def handle(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, dup: bool = False
    ) -> None:
        """Decode and judge one message; what it got wrong is quarantined once it is handled.

        A message the store refused is retried by the hub (:mod:`hub.ingest.retry`): from where
        it stopped when the rules had decided (``NotStoredError.resume``: its quarantine records
        are kept now, the retry does not decode again), or whole otherwise (they are dropped
        now, the retry makes them again). Found in review: a salvaged press's message held
        through a store outage was quarantined once per retry.
        """
        try:
            self._handle(topic, payload, qos, retain, dup)
        except NotStoredError:
            self._settle()
            raise
        except BaseException:
            self._owed.clear()
            raise
        if self._owed:
            self._settle()

    def _settle(self) -> None:
        owed, self._owed = self._owed, []
        for topic, reason, detail, payload, at in owed:
            if reason == IMPLAUSIBLE_VALUE:
                self.stats.implausible_readings += 1
            else:
                self.stats.quarantined += 1
            self._quarantine.add(topic=topic, reason=reason, detail=detail, payload=payload, at=at)

    def _handle(self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool) -> None:
        self.stats.messages += 1
        self._message = (topic, payload, dup)
        received = self._clock.now()
        if len(payload) > self._max_payload:
            self._reject(
                topic, "oversized", f"{len(payload)} bytes > limit {self._max_payload}", payload, received
            )
            return
        steady = self._steady
        ahead = steady.ahead if steady is not None else 0.0
        try:
            # While the rules' clock absorbs a step back of the wall clock it is ``ahead`` of it.
            # The decoders get the wall clock's time (their "a device time after the receive
            # time is not believed" is about real time), and every event time is moved onto the
            # rules' axis after, the device's own and the receive time alike (hub.clock.SteadyClock).
            events = self._adapters.decode(topic, payload, received - ahead, self._registry)
            if ahead:
                events = [replace(event, ts=event.ts + ahead) for event in events]
        except DecodeError as exc:
            self._reject(topic, exc.reason, exc.detail, payload, received)
            if not exc.salvaged:
                return
            # Quarantined for its bad part, and what it did carry is handled: an SOS press
            # beside a bad field or batch item is not lost (DecodeError.salvaged).
            events = list(exc.salvaged)
            if ahead:
                events = [replace(event, ts=event.ts + ahead) for event in events]
        except Exception as exc:  # a decoder bug must not stop the pipeline
            log.exception("decoder failed on %r", topic[:200])
            self._reject(topic, "decoder_error", f"{type(exc).__name__}: {exc}", payload, received)
            return
        self._events(events, retain)

    def _events(self, events: Sequence[Event], retain: bool) -> None:
        if not events:
            return
        subject: Subject | None = None
        # A community's own gateway root speaks for that community only (once per message).
        claim = root_claim(self._owned_roots, self._message[0]) if self._owned_roots else None
        try:
            for index, event in enumerate(events):
                if event.family == NATIVE_FAMILY and self._foreign(event):
                    continue
                # Native events too: under a community's own root the topic's community level
                # is that community's (CommunitySource.as_family_source), and a device of another
                # community there is quarantined whatever the topic names (review).
                if claim is not None and self._elsewhere(event, claim):
                    continue
                if IMPLAUSIBLE in event.attrs:
                    self._implausible(event)
                # A report's events are one device's (a Zigbee2MQTT message carries the door,
                # its battery and its link quality): its subject is looked up once.
                if subject is None or subject.device_id != event.device_id:
                    subject = self._registry.subject(event.device_id)
                try:
                    self._on_event(event, retain, subject)
                except NotStoredError as exc:
                    # Resume where it stopped: this event's undecided rest, then the message's rest.
                    rest = events[index + 1 :]
                    if not rest:
                        raise
                    resume = functools.partial(self._resume_then, exc.resume, rest, retain, self._message)
                    raise NotStoredError(resume=resume, cause=exc.cause) from exc.cause
        finally:
            # Once per message, not per event: it only schedules the rule-state flush of this
            # loop turn, and a message's events share the turn (also when one of them raised).
            self._on_state_change()

    def _resume_then(
        self,
        first: Callable[[], None],
        rest: Sequence[Event],
        retain: bool,
        message: tuple[str, bytes, bool],
    ) -> None:
        """A held message's rest, judged as its own: ``self._message`` is its topic and payload
        again for the while (found in review: it held the last message handled meanwhile, so a
        native SOS press in the rest was quarantined as that message's ``community_mismatch``)."""
        current = self._message
        self._message = message
        try:
            try:
                first()
            except NotStoredError as exc:
                # Still refused: the next retry resumes this event's rest and then the message's
                # (found in review: ``rest`` was dropped, and an SOS press after it lost).
                again = functools.partial(self._resume_then, exc.resume, rest, retain, message)
                raise NotStoredError(resume=again, cause=exc.cause) from exc.cause
            self._events(rest, retain)
        finally:
            self._message = current
            self._settle()  # a retry's resume, outside ``handle``

    def _reject(self, topic: str, reason: str, detail: str, payload: bytes, at: float) -> None:
        if is_probe(payload):
            # `linli doctor`'s round trip proving this root reaches the hub: the decoders refuse
            # (or ignore) it by design, and it is no device's bad input to keep.
            # Counted (``doctor_probes``), logged at debug only: a credential that may publish
            # here could otherwise flood the log with them.
            self.stats.doctor_probes += 1
            log.debug("linli doctor's round-trip probe on %r received", topic[:200])
            return
        self._owed.append((topic, reason, detail, payload, at))

    def _implausible(self, event: Event) -> None:
        """A reading the decoder dropped as impossible: kept in the quarantine, with its reason.

        The event itself goes on (it has no impossible value left, and its report's other
        facts count); the quarantine is where people look for what devices got wrong.
        """
        topic, payload, _dup = self._message
        detail = f"device {event.device_id!r}: {event.attrs[IMPLAUSIBLE]}"
        self._owed.append((topic, IMPLAUSIBLE_VALUE, detail, payload, self._clock.now()))

    def _foreign(self, event: Event) -> bool:
        """A native event whose topic names another community than the device's registration.

        ``linli/<community>/devices/<id>/events`` is the device's claim about where it is; a
        registered device is where the registry says. A mismatch is someone publishing under
        a real device's id from elsewhere: quarantined (``community_mismatch``), never an
        alert for the real device. (Adapters stay pure: the registry lives here.)
        """
        registered = self._registry.subject(event.device_id)
        if not registered.known:
            return False
        parts = self._message[0].split("/")
        claimed = parts[-4] if len(parts) >= 4 else ""
        if claimed == registered.community:
            return False
        self._mismatch(event, str(registered.community), claimed)
        return True

    def _mismatch(self, event: Event, home: str, claimed: str) -> None:
        """Quarantine the message: it names ``event``'s device (of ``home``) under ``claimed``."""
        self.stats.community_mismatches += 1
        topic, payload, _dup = self._message
        detail = f"device {event.device_id!r} is registered in community {home}, not {claimed!r}"
        self._reject(topic, "community_mismatch", detail, payload, self._clock.now())

    def _elsewhere(self, event: Event, claim: str) -> bool:
        """A registered device (or a gateway node's children) of another community than the
        one whose gateway root the message came under: quarantined as ``community_mismatch``.

        A community's sources (``CommunitySource``) are its own gateways: community B's
        Zigbee2MQTT or Tasmota root naming community A's button is someone publishing under a
        real device's id from elsewhere, as a native topic naming another community is
        (:meth:`_foreign`). Hub-wide roots make no claim.
        """
        registered = self._registry.subject(event.device_id)
        if registered.known:
            homes = {registered.community}
        else:
            homes = {
                self._registry.subject(child).community for child in self._registry.children(event.device_id)
            }
        homes.discard(None)
        if not homes or homes == {claim}:
            return False
        self._mismatch(event, ", ".join(sorted(str(h) for h in homes)), claim)
        return True

    def _on_event(self, event: Event, retain: bool, subject: Subject) -> None:
        """One event of ``subject`` (the registry's for ``event.device_id``)."""
        self.stats.events += 1
        # ``Subject.known``, read as the field it tests: the property is a call per event, and a
        # report's three events made three (docs/benchmarks.md, "Twenty-fifth pass").
        known = subject.grid is not None
        if not known:
            if event.device_id.startswith(GROUP):
                # The prefix names the hub's own groups of unregistered devices: a device calling
                # itself "unassigned:<root>" would raise alerts on (and merge into) a gateway's group.
                topic, payload, _dup = self._message
                detail = f"device id {event.device_id[:80]!r} uses the prefix {GROUP!r} of unregistered-device groups"
                self._reject(topic, "reserved_id", detail, payload, self._clock.now())
                return
            children = (
                self._registry.children(event.device_id)
                if event.kind in _NODE_KINDS and event.family == _NODE_FAMILY
                else []
            )
            if children:
                # A gateway node (Tasmota LWT, STATE) speaks for the devices behind it.
                for child in children:
                    self._on_event(replace(event, device_id=child), retain, self._registry.subject(child))
                return
            self.stats.unknown_device_events += 1
            stranger = self._strangers.admit(event, self._message[0])
            if not stranger.listed:
                # Past the listing cap nothing is kept per id: the group stands in for it.
                event = replace(event, device_id=stranger.group)
                subject = Subject(device_id=stranger.group)
        if event.kind in _MOMENTARY and not retain:
            event = self._press_in_time(event)
        # A door that reports the state it reported last (Zigbee2MQTT repeats ``contact`` with
        # every battery or link report) was not opened or closed again: the rules and the care
        # visits take it as a sign the device lives, not as the elder's activity. Found in
        # review: a home door left ajar reported an "opening" every hour, so an elder living
        # alone who fell behind it never raised the 24 h inactivity alert. Only the families
        # that resend a state (a native door event is an edge). There, an opening after a
        # close that was lost on the air reads as a repeat: that costs the inactivity rule one
        # opening, where taking every periodic uplink for one hid an ajar door for ever (the
        # LoRaWAN families were edges until review found that). Identity, not ``in`` a set: an
        # Enum member's hash is a Python call per event.
        judged = event
        kind = event.kind
        if (
            (kind is _DOOR_OPEN or kind is _DOOR_CLOSED)
            and event.family in _STATE_REPEATING
            and self._states.door_unchanged(event, subject)
        ):
            # Made directly: ``dataclasses.replace`` walks the fields (a few µs on this path).
            judged = Event(event.device_id, _HEARTBEAT, event.ts, event.family, None, event.attrs)
        state = self._states.record(event, subject)
        if self._on_device_event is not None and known:
            kinds = self._on_event_kinds
            if kinds is None or judged.kind in kinds:
                self._on_device_event(judged, retain)
        if event.kind not in _HEALTH or self._health_point_due(event, state):
            try:
                self._series.write_many(self._event_series.points(event, self._registry.series_of(subject)))
            except Exception:  # a chart must never cost the rules their event, an SOS least of all
                self.stats.series_errors += 1
                errors = self.stats.series_errors
                if errors & (errors - 1) == 0:  # the 1st, 2nd, 4th, 8th …: seen, never a flood
                    log.exception("time-series points of %s failed (%d so far)", event.kind, errors)
        if retain and event.kind in _MOMENTARY:
            self.stats.retained_presses_skipped += 1
            return
        # The device state's object of the report's time, if it recorded this event (a bench
        # that takes the device state away has none, and its stamp is another event's).
        signals = self._evaluator.on_event(judged, subject, self._states.stamp if state is not None else None)
        if signals:
            self.apply_signals(self._mark_message(signals), subject)

    def _press_in_time(self, event: Event) -> Event:
        """A press in a new message is a new press, whatever time the device's clock gave it.

        The rules know a press again by its time and value (a redelivered copy is the same
        press). A button whose clock is stuck or was reset stamps every press with the same
        or an older time, so its next press — an hour later, the first alert long resolved —
        looked like that copy and was dropped without a trace. Any press no newer than the
        device's previous one takes the hub's receive time (and keeps the device's own as
        ``device_ts``): counted, merged or raised like a press.

        Except a copy: a message the broker marks as resent (DUP, [MQTT-3.3.1-1]) *may* be one
        the hub has handled already. It is one if an active alert of the device recorded its
        digest (:meth:`_mark_message`); then it keeps its time, and the rules and the store
        take it as the same press. A DUP message no active alert knows is a press whose first
        delivery never reached the rules (the connection dropped with it in flight): a new
        press, re-stamped as any other — with a stuck clock its bytes are those of the last,
        already resolved press, and keeping its time dropped it as that press's copy.
        """
        state = self._states.get(event.device_id)
        previous = state.last_ts(event.kind._value_) if state is not None else None
        if previous is None or event.ts > previous:
            return event
        if self._message[2] and self._store.message_in_active_alert(event.device_id, self._digest()):
            return event
        self.stats.presses_restamped += 1
        ts = max(self._clock.now(), previous + 0.001)
        return replace(event, ts=ts, attrs={**event.attrs, "device_ts": event.ts})

    def _digest(self) -> str:
        """The current message's identity: its topic and payload bytes."""
        topic, payload, _dup = self._message
        return hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=12).hexdigest()

    def _mark_message(self, signals: Sequence[Signal]) -> list[Signal]:
        """Record which message decided, so its redelivery is known as the same occurrence.

        After a crash between the alert's commit and the PUBACK, the broker sends the press
        again with DUP set [MQTT-3.3.1-1]; the rule state may not have been flushed, so the
        rules can decide anew. The store drops a redelivered message whose digest an active
        alert already recorded: the press counts once and nobody gets a false reminder.
        """
        mark: dict[str, object] = {"message": self._digest()}
        dup = self._message[2]
        if dup:
            mark["redelivered"] = True
        return [replace(signal, trace={**signal.trace, **mark}) for signal in signals]

    def apply_signals(self, signals: Sequence[Signal], subject: Subject | None = None) -> None:
        """Store what the rules decided (from an event, or from a timer when ``subject`` is None).

        If the store refuses one, :class:`NotStoredError` carries the signals not yet stored,
        so that a retry stores exactly those (the rules have already moved on). An unknown
        device's signal is raised on its gateway group (:meth:`_grouped`).

        Signals leave the rules' time axis here: while the rules' clock absorbs a step back of
        the wall clock (hub.clock.SteadyClock) their times are ``ahead`` of it, and alerts,
        cases, shifts and notifications run on the wall clock.
        """
        steady = self._steady
        if steady is not None and (ahead := steady.ahead):
            signals = [replace(signal, ts=signal.ts - ahead) for signal in signals]
        self._store_signals(signals, subject)

    def _store_signals(self, signals: Sequence[Signal], subject: Subject | None) -> None:
        for index, raw in enumerate(signals):
            about = subject if subject is not None else self._registry.subject(raw.subject)
            signal = raw if about.known else self._grouped(raw)
            # Alerts that become cases are notified by casework (dispatch and escalation);
            # information-only alerts go straight to whoever is on duty.
            recipients = self._routing.recipients(about, signal) if signal.severity is Severity.INFO else []
            try:
                change = record_signal(self._store, signal, about, recipients)
            except Exception as exc:
                pending = tuple(signals[index:])
                raise NotStoredError(
                    # On the wall clock's axis already: the resume must not move them again.
                    resume=functools.partial(self._store_signals, pending, subject),
                    cause=exc,
                ) from exc
            self.stats.signals += 1
            if change is not None:
                self._announce(change)
            elif signal.action is not SignalAction.CLEAR:
                self.stats.occurrences_repeated += 1

    def _health_point_due(self, event: Event, state: DeviceState | None) -> bool:
        """Battery, signal and heartbeat are charted at most every few minutes per device.

        A device reports them with every message; one point per interval keeps the time
        series (and the writer's CPU) proportional to devices, not to message rate. State
        changes (doors, occupancy, presses) are always written.

        ``state``: what :meth:`DeviceStates.record` returned for the event, just before.
        Without one (a benchmark that takes the device state away) every point is charted.
        """
        if state is None:
            return True
        # The sum is made per event and dropped; storing it would keep a float per kind and device.
        kind, ts = event.kind, event.ts
        if kind is _BATTERY:
            if ts < state.battery_charted + HEALTH_SERIES_INTERVAL_S:
                return False
            state.battery_charted = ts
        elif kind is _SIGNAL:
            if ts < state.signal_charted + HEALTH_SERIES_INTERVAL_S:
                return False
            state.signal_charted = ts
        else:
            if ts < state.heartbeat_charted + HEALTH_SERIES_INTERVAL_S:
                return False
            state.heartbeat_charted = ts
        return True

    def _grouped(self, signal: Signal) -> Signal:
        """An unknown device's signal, raised on its gateway group (one alert and case per burst).

        A raise within ``unknown_burst_s`` of the group's last occurrence only counts: 500
        unknown buttons pressed through one gateway are one case for the command centre,
        not 500; the first press still opens it at once.
        """
        group = self._strangers.group_of(signal.subject)
        if group is None:
            return signal
        grouped = replace(signal, subject=group)
        if signal.action is not SignalAction.RAISE:
            return grouped
        active = self._store.active_alert(signal.rule_id, group)
        if active is None:
            via = group.removeprefix(GROUP)
            return replace(
                grouped,
                title_zh=f"{signal.title_zh}（未登记设备，经 {via}）",
                title_en=f"{signal.title_en} (unregistered device(s) via {via})",
            )
        if signal.ts - active.last_seen <= self._unknown_burst_s:
            self.stats.unknown_presses_grouped += 1
            return replace(grouped, action=SignalAction.UPDATE)
        return grouped

    def _announce(self, change: AlertChange) -> None:
        if change.created:
            self.stats.alerts_raised += 1
            log.info(
                "alert %s raised: %s device=%s grid=%s",
                change.alert.id,
                change.alert.rule,
                change.alert.device_id,
                change.alert.grid,
            )
        self._series.write(
            alert_point(
                change.alert,
                transition=alert_transition(change.alert, created=change.created),
                device_kind=self._registry.series_info(change.alert.device_id).device_kind,
            )
        )
        if change.notifications:
            self._on_notifications()
        self._on_alert_change(change)
