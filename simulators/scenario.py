"""Scenarios: YAML stories with times and expected alerts, notifications and case timelines.

A scenario names a community (the generated one for a seed, or a file), gives names to the
actors of the story (a resident, a device, a place, a person), plays timed steps (an elder
presses SOS, a car stops in the fire lane, a door stays shut, a worker accepts the case) against
a hub through the :class:`HubControl` port, and compares what the hub did with the ``expect``
block. The result carries a readable diff: expected vs actual, item by item.

The simulator never imports the hub: the CLI (or a test) implements :class:`HubControl` against
an embedded hub or an external one. Time is simulated: the runner moves the hub's clock with
:meth:`HubControl.advance_to` in strides of at most ``stride`` and publishes each message when
its moment comes, so a 26-hour story runs in seconds.

Times in a scenario: ``"02:13"`` (the next such local time at or after the previous step; in
``expect``, at or after the start), ``"+70s"`` (after the previous step; in ``expect``, after the
start) or ``"<step name>+1m"`` (after a named step). Durations: ``70s``, ``5m``, ``26h``, ``1d``,
combinations like ``1h30m``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulators.behaviour import Behaviour, BehaviourConfig
from simulators.community import SimCommunity, SimDevice, generate, load
from simulators.types import Act

SCENARIO_DIR = Path(__file__).parent / "scenarios"
_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$"
)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_ANCHORED = re.compile(r"^([A-Za-z_][\w-]*)(?:\+(.+))?$")


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the field."""


def parse_duration(text: str) -> float:
    """``70s`` / ``5m`` / ``1h30m`` / ``1d`` → seconds."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (e.g. 70s, 5m, 1h30m, 1d)")
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s


def _check_time(text: str) -> str:
    text = text.strip()
    if text.startswith("+"):
        parse_duration(text[1:])
    elif _CLOCK.match(text):
        hh, mm, ss = _CLOCK.match(text).groups()  # type: ignore[union-attr]
        if int(hh) > 23 or int(mm) > 59 or int(ss or 0) > 59:
            raise ValueError(f"{text!r} is not a time of day")
    elif (anchored := _ANCHORED.match(text)) is not None:
        if anchored.group(2):
            parse_duration(anchored.group(2))
    else:
        raise ValueError(f"{text!r} is not a time (HH:MM, +duration or step+duration)")
    return text


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommunitySpec(_Model):
    """The generated community for ``seed`` (with generator ``params``), or a community ``file``."""

    seed: int = 1
    params: dict[str, int | float | str] = Field(default_factory=dict)
    file: Path | None = None


class DeviceSelector(_Model):
    """The ``nth`` device (from 0, in community order) matching every given field."""

    kind: str | None = None
    family: str | None = None
    place_kind: str | None = None
    living_alone: bool | None = None
    grid: int | None = Field(default=None, ge=1)
    green_key: bool | None = None
    nth: int = Field(default=0, ge=0)


class ActorSpec(_Model):
    resident: str | None = None
    device: str | None = None
    place: str | None = None
    person: str | None = None
    select: DeviceSelector | None = None

    @model_validator(mode="after")
    def _one(self) -> ActorSpec:
        given = [
            k for k in ("resident", "device", "place", "person", "select") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError("an actor is exactly one of resident, device, place, person or select")
        return self


class Action(StrEnum):
    PRESS_SOS = "press_sos"
    PRESS_FALSE = "press_false"
    SERVICE = "service"
    DOOR_OPEN = "door_open"
    DOOR_CLOSE = "door_close"
    OCCUPY = "occupy"
    FREE = "free"
    HEARTBEAT = "heartbeat"
    BATTERY = "battery"
    TAMPER = "tamper"
    TAMPER_CLEAR = "tamper_clear"
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    FALL = "fall"
    MOTION = "motion"
    OFFLINE = "offline"
    ONLINE = "online"
    GARBAGE = "garbage"
    SILENCE = "silence"
    RESUME = "resume"
    WAIT = "wait"
    # A person acts on a case.
    ACCEPT = "accept"
    ARRIVE = "arrive"
    HANDLE = "handle"
    VERIFY = "verify"
    CLOSE = "close"
    CALL_BACK = "call_back"
    FALSE_ALARM = "false_alarm"
    NOTE = "note"
    # The command centre records a 评价 after its 回访 call (issue 18).
    EVALUATE = "evaluate"
    # A grid worker records a care visit (探访) of an elder: ``elder``, ``outcome``.
    VISIT = "visit"


DEVICE_ACTS: Mapping[Action, Act] = {
    Action.PRESS_SOS: Act.SOS_PRESS,
    Action.PRESS_FALSE: Act.FALSE_PRESS,
    Action.SERVICE: Act.SERVICE_REQUEST,
    Action.DOOR_OPEN: Act.DOOR_OPEN,
    Action.DOOR_CLOSE: Act.DOOR_CLOSE,
    Action.OCCUPY: Act.OCCUPIED,
    Action.FREE: Act.FREE,
    Action.HEARTBEAT: Act.HEARTBEAT,
    Action.BATTERY: Act.BATTERY,
    Action.TAMPER: Act.TAMPER,
    Action.TAMPER_CLEAR: Act.TAMPER_CLEAR,
    Action.SMOKE: Act.SMOKE,
    Action.GAS: Act.GAS,
    Action.WATER_LEAK: Act.WATER_LEAK,
    Action.FALL: Act.FALL,
    Action.MOTION: Act.MOTION,
    Action.OFFLINE: Act.OFFLINE,
    Action.ONLINE: Act.ONLINE,
    Action.GARBAGE: Act.GARBAGE,
}
CASE_ACTIONS = frozenset(
    {
        Action.ACCEPT,
        Action.ARRIVE,
        Action.HANDLE,
        Action.VERIFY,
        Action.CLOSE,
        Action.CALL_BACK,
        Action.FALSE_ALARM,
        Action.NOTE,
    }
)
#: Which of a resident's devices an act uses.
_ROLE_OF_ACT = {
    Act.SOS_PRESS: "sos_button",
    Act.FALSE_PRESS: "sos_button",
    Act.SERVICE_REQUEST: "sos_button",
    Act.DOOR_OPEN: "door_sensor",
    Act.DOOR_CLOSE: "door_sensor",
    Act.SMOKE: "smoke_detector",
    Act.GAS: "gas_detector",
    Act.WATER_LEAK: "water_leak_sensor",
    Act.FALL: "fall_detector",
    Act.MOTION: "motion_sensor",
}


class Via(StrEnum):
    CONTROL = "control"  # the hub's control API (console, REST)
    MQTT = "mqtt"  # the worker's app replying on linli/<community>/workers/<person>/replies


class Background(StrEnum):
    NONE = "none"
    HEARTBEATS = "heartbeats"  # every device checks in at its interval; nothing else happens
    FULL = "full"  # the whole behaviour model (noisy: expect only what you list)


class Step(_Model):
    at: str
    do: Action
    #: The actor doing it: a device actor for device actions, a person actor (or person id) for case actions.
    actor: str | None = None
    #: For case actions: the actor whose device's (latest) case is acted on.
    case: str | None = None
    #: For a resident actor: which of their devices (``sos_button`` or ``door_sensor``).
    device: str | None = None
    name: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w-]*$")
    note: str = ""
    via: Via = Via.CONTROL
    #: ``battery``: the level (percent) the device reports.
    level: float | None = Field(default=None, ge=0, le=100)
    #: ``evaluate``: 满意 / 基本满意 / 不满意 (不满意 needs ``note``: the reason, for the 返工).
    rating: str | None = Field(default=None, pattern=r"^(satisfied|basically_satisfied|unsatisfied)$")
    #: ``visit``: the elder visited (a resident actor) and what the visitor found.
    elder: str | None = None
    outcome: str | None = Field(default=None, pattern=r"^(visited_well|needs_help|not_at_home)$")

    _at = field_validator("at")(_check_time)

    @model_validator(mode="after")
    def _needs(self) -> Step:
        if self.do in CASE_ACTIONS and (self.actor is None or self.case is None):
            raise ValueError(f"{self.do.value} needs `actor` (who) and `case` (whose case)")
        if (self.do in DEVICE_ACTS or self.do in (Action.SILENCE, Action.RESUME)) and self.actor is None:
            raise ValueError(f"{self.do.value} needs `actor` (which device)")
        if self.do is Action.BATTERY and self.level is None:
            raise ValueError("battery needs `level` (percent)")
        if self.do is Action.EVALUATE and (self.case is None or self.rating is None):
            raise ValueError("evaluate needs `case` (whose case) and `rating`")
        if self.do is Action.VISIT and (self.actor is None or self.elder is None or self.outcome is None):
            raise ValueError("visit needs `actor` (the visitor), `elder` and `outcome`")
        return self


class _Timed(_Model):
    at: str | None = None
    tolerance: str | None = None
    #: Exactly this many actual items must match (``0``: none may); without it, at least one.
    count: int | None = Field(default=None, ge=0)

    @field_validator("at")
    @classmethod
    def _at(cls, value: str | None) -> str | None:
        return None if value is None else _check_time(value)

    @field_validator("tolerance")
    @classmethod
    def _tol(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class ExpectAlert(_Timed):
    rule: str
    subject: str | None = None
    status: str | None = Field(default=None, pattern=r"^(active|resolved)$")


class ExpectNotification(_Timed):
    recipient: str | None = None
    type: str | None = None
    case: str | None = None


class ExpectTimeline(_Timed):
    case: str
    action: str
    actor: str | None = None


class ExpectCase(_Model):
    case: str
    state: str | None = None
    assignee: str | None = None
    resolution: str | None = None


class Expect(_Model):
    alerts: tuple[ExpectAlert, ...] = ()
    notifications: tuple[ExpectNotification, ...] = ()
    timeline: tuple[ExpectTimeline, ...] = ()
    cases: tuple[ExpectCase, ...] = ()


class Scenario(_Model):
    name: str
    description: str = ""
    #: What the scenario covers (rule ids, escalation paths): for the coverage test and docs.
    covers: tuple[str, ...] = ()
    start: datetime
    zone: str = "Asia/Shanghai"
    community: CommunitySpec = CommunitySpec()
    actors: dict[str, ActorSpec] = Field(default_factory=dict)
    background: Background = Background.HEARTBEATS
    #: The longest clock move in one ``advance_to``.
    stride: str = "1s"
    #: Default tolerance of expected times.
    tolerance: str = "5s"
    steps: tuple[Step, ...] = Field(min_length=1)
    #: Run on until this time after the last step (default: the last step plus the tolerance).
    until: str | None = None
    expect: Expect = Expect()

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start must be RFC 3339 with a zone offset (2026-03-03T02:00:00+08:00)")
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("stride", "tolerance")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("until")
    @classmethod
    def _until(cls, value: str | None) -> str | None:
        return None if value is None else _check_time(value)

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        names = {s.name for s in self.steps if s.name}
        for i, step in enumerate(self.steps):
            for ref in (step.actor, step.case):
                if ref is not None and ref not in self.actors and step.do not in CASE_ACTIONS:
                    raise ValueError(f"steps[{i}] names unknown actor {ref!r}")
            if step.case is not None and step.case not in self.actors:
                raise ValueError(f"steps[{i}].case names unknown actor {step.case!r}")
        for what, items in (
            ("alerts", self.expect.alerts),
            ("notifications", self.expect.notifications),
            ("timeline", self.expect.timeline),
        ):
            for j, item in enumerate(items):
                at = item.at
                anchored = (
                    _ANCHORED.match(at) if at and not at.startswith("+") and not _CLOCK.match(at) else None
                )
                if anchored is not None and anchored.group(1) not in names:
                    raise ValueError(f"expect.{what}[{j}].at names unknown step {anchored.group(1)!r}")
        for j, item in enumerate(self.expect.timeline):
            if item.case not in self.actors:
                raise ValueError(f"expect.timeline[{j}].case names unknown actor {item.case!r}")
        for j, case in enumerate(self.expect.cases):
            if case.case not in self.actors:
                raise ValueError(f"expect.cases[{j}].case names unknown actor {case.case!r}")
        return self


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_scenario(text: str, *, file: str) -> Scenario:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{file}: not valid YAML: {exc}") from None
    try:
        scenario = Scenario.model_validate(doc)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        where = _where(error["loc"]) or "(document)"
        raise ScenarioError(f"{file}: {where}: {message}") from None
    spec = scenario.community
    if spec.file is not None and not spec.file.is_absolute():
        base = Path(file).parent
        scenario = scenario.model_copy(
            update={"community": spec.model_copy(update={"file": base / spec.file})}
        )
    return scenario


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    return parse_scenario(text, file=str(path))


def shipped_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.yaml"))


# -- the port to the hub -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertView:
    id: str
    rule: str
    subject: str
    status: str
    raised_at: float
    device_id: str = ""
    resolved_at: float | None = None
    count: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseView:
    id: str
    subject: str
    state: str
    category: str = ""
    assignee: str | None = None
    alert_id: str | None = None
    resolution: str | None = None
    filed_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineView:
    action: str
    actor: str
    at: float
    to_state: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationView:
    recipient: str
    type: str
    at: float
    case_id: str | None = None
    rule: str | None = None
    topic: str = ""


class HubControl(Protocol):
    """What a scenario needs from a hub (embedded or external). All times are Unix seconds."""

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Deliver one device message to the hub (through its broker or straight to its pipeline)."""
        ...

    async def advance_to(self, ts: float) -> None:
        """Move the hub's clock to ``ts`` and let every timer due by then fire (rules, escalation)."""
        ...

    async def alerts(self) -> Sequence[AlertView]: ...

    async def cases(self) -> Sequence[CaseView]: ...

    async def case_timeline(self, case_id: str) -> Sequence[TimelineView]: ...

    async def notifications(self) -> Sequence[NotificationView]:
        """Every notification the hub sent (to people and the command centre), oldest first."""
        ...

    async def act(self, case_id: str, action: str, actor: str, note: str) -> None:
        """A person acts on a case through the hub's control API; raises if the hub refuses."""
        ...

    async def evaluate(self, case_id: str, rating: str, note: str) -> None:
        """The command centre records a 评价 after a call-back (``POST /api/cases/{id}/evaluate``)."""
        ...

    async def record_visit(self, elder: str, outcome: str, actor: str, note: str) -> None:
        """``actor`` records a visit of ``elder`` (his urgent one first); raises if the hub refuses."""
        ...


# -- running -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    passed: bool
    diff: str
    #: What the runner did, one line per step.
    log: tuple[str, ...] = ()


@dataclass(slots=True)
class _Actor:
    name: str
    devices: list[SimDevice] = field(default_factory=list)
    person: str | None = None

    def device(self, role: str | None) -> SimDevice:
        if role is not None:
            for d in self.devices:
                if d.kind == role:
                    return d
            raise ScenarioError(f"actor {self.name} has no {role}")
        if not self.devices:
            raise ScenarioError(f"actor {self.name} has no device")
        return self.devices[0]


def build_community(scenario: Scenario) -> SimCommunity:
    spec = scenario.community
    if spec.file is not None:
        return load(spec.file)
    params: dict[str, Any] = dict(spec.params)
    return generate(seed=spec.seed, **params)


def resolve_actors(scenario: Scenario, community: SimCommunity) -> dict[str, _Actor]:
    actors: dict[str, _Actor] = {}
    grids = [g["code"] for c in community.communities for g in c["grids"]]
    people = {p["id"] for p in community.people()}
    for name, spec in scenario.actors.items():
        actor = _Actor(name)
        if spec.resident is not None:
            actor.devices = [d for d in community.devices if d.resident == spec.resident]
            actor.devices.sort(key=lambda d: d.kind != "sos_button")
            if not actor.devices:
                raise ScenarioError(f"actor {name}: resident {spec.resident} has no devices in the community")
        elif spec.device is not None:
            found = community.device(spec.device)
            if found is None:
                raise ScenarioError(f"actor {name}: no device {spec.device} in the community")
            actor.devices = [found]
        elif spec.place is not None:
            actor.devices = [d for d in community.devices if d.place == spec.place]
            if not actor.devices:
                raise ScenarioError(f"actor {name}: no device on place {spec.place}")
        elif spec.person is not None:
            if spec.person not in people and spec.person != "command-centre":
                raise ScenarioError(f"actor {name}: no person {spec.person} in the community")
            actor.person = spec.person
        elif spec.select is not None:
            sel = spec.select
            matching = [
                d
                for d in community.devices
                if (sel.kind is None or d.kind == sel.kind)
                and (sel.family is None or d.family.value == sel.family)
                and (sel.place_kind is None or d.place_kind == sel.place_kind)
                and (
                    sel.living_alone is None
                    or (d.resident is not None and d.living_alone == sel.living_alone)
                )
                and (sel.green_key is None or d.green_key == sel.green_key)
                and (sel.grid is None or (sel.grid <= len(grids) and d.grid == grids[sel.grid - 1]))
            ]
            if len(matching) <= sel.nth:
                raise ScenarioError(f"actor {name}: only {len(matching)} devices match the selector")
            actor.devices = [matching[sel.nth]]
        actors[name] = actor
    return actors


class _Clock:
    """Resolves scenario time expressions in the scenario's zone."""

    def __init__(self, scenario: Scenario) -> None:
        self.zone = ZoneInfo(scenario.zone)
        self.start = scenario.start.timestamp()
        self.named: dict[str, float] = {}

    def at(self, text: str, *, after: float) -> float:
        text = text.strip()
        if text.startswith("+"):
            return after + parse_duration(text[1:])
        clock = _CLOCK.match(text)
        if clock is not None:
            hh, mm, ss = (int(g) if g else 0 for g in clock.groups())
            base = datetime.fromtimestamp(after, self.zone)
            moment = base.replace(hour=hh, minute=mm, second=ss, microsecond=0)
            if moment.timestamp() < after:
                moment = (base + timedelta(days=1)).replace(hour=hh, minute=mm, second=ss, microsecond=0)
            return moment.timestamp()
        anchored = _ANCHORED.match(text)
        assert anchored is not None
        name, offset = anchored.groups()
        if name not in self.named:
            raise ScenarioError(f"time {text!r} names step {name!r}, which has not happened")
        return self.named[name] + (parse_duration(offset) if offset else 0.0)

    def show(self, ts: float) -> str:
        moment = datetime.fromtimestamp(ts, self.zone)
        days = (moment.date() - datetime.fromtimestamp(self.start, self.zone).date()).days
        text = moment.strftime("%H:%M:%S")
        return f"D+{days} {text}" if days else text


def _delta(seconds: float) -> str:
    sign = "+" if seconds >= 0 else "-"
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds:.0f}s"
    if seconds < 7200:
        return f"{sign}{seconds / 60:.1f}m"
    return f"{sign}{seconds / 3600:.1f}h"


class _Runner:
    def __init__(self, scenario: Scenario, control: HubControl, community: SimCommunity) -> None:
        self.s = scenario
        self.control = control
        self.community = community
        self.clock = _Clock(scenario)
        self.actors = resolve_actors(scenario, community)
        self.stride = parse_duration(scenario.stride)
        self.now = self.clock.start
        if scenario.background is Background.FULL:
            config = BehaviourConfig(seed=scenario.community.seed, zone=scenario.zone)
        else:
            config = BehaviourConfig.quiet(seed=scenario.community.seed, zone=scenario.zone)
            if scenario.background is Background.NONE:
                config = BehaviourConfig(**{**_fields(config), "heartbeats": False})
        self.behaviour = Behaviour(devices=community.devices, start=self.clock.start, config=config)
        self.log: list[str] = []
        self.errors: list[str] = []

    async def _advance(self, target: float) -> None:
        while self.now < target:
            self.now = min(target, self.now + self.stride)
            await self.control.advance_to(self.now)

    async def _run_until(self, target: float) -> None:
        while True:
            nxt = self.behaviour.next_at()
            if nxt is None or nxt > target:
                break
            await self._advance(nxt)
            for emission in self.behaviour.emissions(nxt):
                for message in emission.messages:
                    await self.control.publish(message.topic, message.payload, message.qos)
        await self._advance(target)
        self.behaviour.emissions(target)

    def _person(self, ref: str) -> str:
        actor = self.actors.get(ref)
        if actor is not None and actor.person is not None:
            return actor.person
        return ref

    def _subjects(self, ref: str) -> set[str]:
        actor = self.actors.get(ref)
        return {d.id for d in actor.devices} if actor is not None else {ref}

    async def _case_of(self, ref: str) -> CaseView | None:
        subjects = self._subjects(ref)
        mine = [c for c in await self.control.cases() if c.subject in subjects]
        open_ = [c for c in mine if c.state not in ("closed", "void")]
        pool = open_ or mine
        return max(pool, key=lambda c: c.filed_at) if pool else None

    async def run(self) -> ScenarioResult:
        await self.control.advance_to(self.now)
        previous = self.now
        for i, step in enumerate(self.s.steps):
            at = self.clock.at(step.at, after=previous)
            previous = at
            if step.name:
                self.clock.named[step.name] = at
            await self._run_until(at)
            try:
                await self._do(step, at)
            except ScenarioError as exc:
                self.errors.append(f"steps[{i}] {step.do.value} at {self.clock.show(at)}: {exc}")
            except Exception as exc:  # the hub refused an action: part of the diff, not a crash
                self.errors.append(f"steps[{i}] {step.do.value} at {self.clock.show(at)}: hub refused: {exc}")
        end = previous + parse_duration(self.s.tolerance)
        if self.s.until is not None:
            end = self.clock.at(self.s.until, after=previous)
        await self._run_until(end)
        return await self._compare()

    async def _do(self, step: Step, at: float) -> None:
        when = self.clock.show(at)
        if step.do is Action.WAIT:
            self.log.append(f"{when} wait")
            return
        if step.do is Action.VISIT:
            assert step.actor is not None and step.elder is not None and step.outcome is not None
            person = self._person(step.actor)
            spec = self.s.actors.get(step.elder)
            elder = spec.resident if spec is not None and spec.resident is not None else step.elder
            await self.control.record_visit(elder, step.outcome, person, step.note)
            self.log.append(f"{when} {person} visit {elder} ({step.elder}): {step.outcome}")
            return
        if step.do is Action.EVALUATE:
            assert step.case is not None and step.rating is not None
            case = await self._case_of(step.case)
            if case is None:
                raise ScenarioError(f"no case for {step.case}")
            await self.control.evaluate(case.id, step.rating, step.note)
            self.log.append(f"{when} command centre evaluate {step.rating} case {case.id} ({step.case})")
            return
        if step.do in CASE_ACTIONS:
            assert step.actor is not None and step.case is not None
            person = self._person(step.actor)
            case = await self._case_of(step.case)
            if case is None:
                raise ScenarioError(f"no case for {step.case}")
            note = step.note or f"{step.do.value} by {person} (scenario)"
            if step.via is Via.MQTT:
                topic = f"linli/{self.community.code}/workers/{person}/replies"
                body = orjson.dumps({"case_id": case.id, "action": step.do.value, "note": note})
                await self.control.publish(topic, body, 1)
            else:
                await self.control.act(case.id, step.do.value, person, note)
            self.log.append(f"{when} {person} {step.do.value} case {case.id} ({step.case})")
            return
        assert step.actor is not None
        actor = self.actors[step.actor]
        if step.do in (Action.SILENCE, Action.RESUME):
            device = actor.device(step.device)
            (self.behaviour.silence if step.do is Action.SILENCE else self.behaviour.resume)(device.id)
            self.log.append(f"{when} {step.actor} ({device.id}) {step.do.value}")
            return
        act = DEVICE_ACTS[step.do]
        device = actor.device(step.device or _ROLE_OF_ACT.get(act))
        emission = self.behaviour.act(device.id, act, at, battery=step.level)
        if not emission.messages:
            raise ScenarioError(f"{device.family.value} device {device.id} cannot {act.value}")
        for message in emission.messages:
            await self.control.publish(message.topic, message.payload, message.qos)
        self.log.append(f"{when} {step.actor} ({device.id}, {device.family.value}) {act.value}")

    # -- comparing ----------------------------------------------------------------------------------

    def _window(self, at: str | None, tolerance: str | None) -> tuple[float, float] | None:
        if at is None:
            return None
        ts = self.clock.at(at, after=self.clock.start) if not _is_named(at) else self.clock.at(at, after=0.0)
        return ts, parse_duration(tolerance or self.s.tolerance)

    async def _compare(self) -> ScenarioResult:  # noqa: PLR0915 - one report, read top to bottom
        lines: list[str] = [f"scenario {self.s.name!r}"]
        failures = len(self.errors)
        for error in self.errors:
            lines.append(f"  FAIL  {error}")
        alerts = list(await self.control.alerts())
        notes = list(await self.control.notifications())
        cases = list(await self.control.cases())
        show = self.clock.show

        def verdict(ok: bool, text: str, detail: list[str]) -> None:
            nonlocal failures
            lines.append(f"  {'ok  ' if ok else 'FAIL'}  {text}")
            if not ok:
                failures += 1
                lines.extend(f"        {d}" for d in detail)

        def check(
            label: str,
            *,
            candidates: Sequence[Any],
            when_of: Any,
            describe: Any,
            window: tuple[float, float] | None,
            count: int | None,
            expected_text: str,
        ) -> None:
            in_time = [c for c in candidates if window is None or abs(when_of(c) - window[0]) <= window[1]]
            at_text = f" at {show(window[0])} ±{window[1]:.0f}s" if window else ""
            text = f"{label}: {expected_text}{at_text}"
            if count is not None:
                ok = len(in_time) == count
                detail = [f"expected {count}, got {len(in_time)}"] + [
                    f"actual: {describe(c)}" for c in in_time[:5]
                ]
                verdict(ok, text + f" (count {count})", detail)
                return
            if in_time:
                verdict(True, text + f" — {describe(in_time[0])}", [])
                return
            detail = [f"expected: {expected_text}{at_text}"]
            if candidates and window is not None:
                nearest = min(candidates, key=lambda c: abs(when_of(c) - window[0]))
                detail.append(
                    f"actual:   nearest {describe(nearest)} ({_delta(when_of(nearest) - window[0])})"
                )
            elif candidates:
                detail.append(f"actual:   {describe(candidates[0])}")
            else:
                detail.append("actual:   none")
            verdict(False, text, detail)

        if self.s.expect.alerts:
            lines.append("alerts")
        for ea in self.s.expect.alerts:
            subjects = self._subjects(ea.subject) if ea.subject else None
            candidates = [
                a
                for a in alerts
                if a.rule == ea.rule
                and (subjects is None or a.subject in subjects or a.device_id in subjects)
                and (ea.status is None or a.status == ea.status)
            ]
            check(
                "alert",
                candidates=candidates,
                when_of=lambda a: a.raised_at,
                describe=lambda a: f"{a.rule} on {a.subject} {a.status} raised {show(a.raised_at)}",
                window=self._window(ea.at, ea.tolerance),
                count=ea.count,
                expected_text=f"{ea.rule}"
                + (f" on {ea.subject}" if ea.subject else "")
                + (f" {ea.status}" if ea.status else ""),
            )
        if self.s.expect.notifications:
            lines.append("notifications")
        for en in self.s.expect.notifications:
            case_ids = {c.id for c in cases if c.subject in self._subjects(en.case)} if en.case else None
            recipient = self._person(en.recipient) if en.recipient else None
            note_candidates = [
                n
                for n in notes
                if (recipient is None or n.recipient == recipient)
                and (en.type is None or n.type == en.type)
                and (case_ids is None or n.case_id in case_ids)
            ]
            check(
                "notification",
                candidates=note_candidates,
                when_of=lambda n: n.at,
                describe=lambda n: f"{n.type} → {n.recipient} at {show(n.at)}",
                window=self._window(en.at, en.tolerance),
                count=en.count,
                expected_text=f"{en.type or 'any'} → {recipient or 'anyone'}"
                + (f" for {en.case}" if en.case else ""),
            )
        if self.s.expect.timeline:
            lines.append("timeline")
        timelines: dict[str, list[TimelineView]] = {}
        for et in self.s.expect.timeline:
            entries: list[TimelineView] = []
            for case in cases:
                if case.subject in self._subjects(et.case):
                    if case.id not in timelines:
                        timelines[case.id] = list(await self.control.case_timeline(case.id))
                    entries += timelines[case.id]
            actor = self._person(et.actor) if et.actor else None
            entry_candidates = [
                e for e in entries if e.action == et.action and (actor is None or e.actor == actor)
            ]
            check(
                "timeline",
                candidates=entry_candidates,
                when_of=lambda e: e.at,
                describe=lambda e: f"{e.action} by {e.actor} at {show(e.at)}",
                window=self._window(et.at, et.tolerance),
                count=et.count,
                expected_text=f"{et.case}: {et.action}" + (f" by {actor}" if actor else ""),
            )
        if self.s.expect.cases:
            lines.append("cases")
        for ec in self.s.expect.cases:
            mine = sorted(
                (c for c in cases if c.subject in self._subjects(ec.case)), key=lambda c: c.filed_at
            )
            want = {
                k: v
                for k, v in (("state", ec.state), ("assignee", ec.assignee), ("resolution", ec.resolution))
                if v is not None
            }
            if "assignee" in want:
                want["assignee"] = self._person(want["assignee"])
            text = f"case of {ec.case}: " + ", ".join(f"{k}={v}" for k, v in want.items())
            if not mine:
                verdict(False, text, [f"expected: {text}", "actual:   no case"])
                continue
            last = mine[-1]
            got = {k: getattr(last, k) for k in want}
            verdict(got == want, text, [f"expected: {want}", f"actual:   {got} (case {last.id})"])
        passed = failures == 0
        lines.insert(1, f"  {'PASSED' if passed else f'FAILED: {failures} expectation(s) not met'}")
        return ScenarioResult(passed=passed, diff="\n".join(lines), log=tuple(self.log))


def _is_named(text: str) -> bool:
    return not text.startswith("+") and _CLOCK.match(text) is None


def _fields(config: BehaviourConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


async def run_scenario(
    scenario: Scenario, control: HubControl, *, community: SimCommunity | None = None
) -> ScenarioResult:
    """Play ``scenario`` against the hub behind ``control`` and compare with its ``expect`` block."""
    runner = _Runner(scenario, control, community or build_community(scenario))
    return await runner.run()
