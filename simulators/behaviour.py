"""A deterministic behaviour model: what a community's devices say, and when, in simulated time.

Pure: no I/O and no wall clock. :meth:`Behaviour.step` returns the messages due up to a
simulated time; the same seed, devices and start give the same messages however the time is
stepped (every device draws from its own random stream, and events are kept in a time-ordered
queue rather than sampled per tick).

What happens (rates are per device unless said otherwise; all in :class:`BehaviourConfig`):

* Household doors open with a daily rhythm: a morning peak (06–09), an evening peak (17–20),
  quiet days and rare openings at night (00–05); the door closes 5–40 s later. Building
  entrances follow the same rhythm, twelve times busier, and are now and then held open for
  minutes. Fire exits open rarely and sometimes stay open for minutes.
* Parking spaces follow commuting: cars leave 07–09 and come back 17–20; the fire lane gets an
  occasional car, usually for a minute or two, sometimes for a quarter of an hour.
* SOS presses are rare (one per button per month by default), false presses rarer; green keys
  ask for a service now and then in the daytime.
* Heartbeats at each device's interval (±2 %), carrying the battery where the format has it;
  batteries drain (a few fast) and die (the device goes silent for good); devices drop offline
  and come back (with the family's availability message where it has one); tamper switches trip
  and reset; a few broken gateways publish garbage.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from simulators import formats
from simulators.community import SimDevice
from simulators.types import Act, Message, Reading

DAY = 86400.0

#: Openings per hour of a household door, by local hour (an elder's day).
HOUSEHOLD_DOOR_PER_H = (
    0.03, 0.03, 0.03, 0.03, 0.03, 0.2,  # 00–05: night rarity
    1.2, 1.2, 1.2,  # 06–08: morning peak
    0.5, 0.5, 0.6, 0.6, 0.4, 0.4, 0.4, 0.4,  # 09–16
    1.0, 1.0, 1.0,  # 17–19: evening peak
    0.4, 0.4, 0.1, 0.1,  # 20–23
)  # fmt: skip
ENTRANCE_FACTOR = 12.0
FIRE_EXIT_PER_H = 0.02
#: Parking space: (leave rate when occupied, arrive rate when free) per hour, by local hour.
PARK_LEAVE_PER_H = tuple(0.02 if h < 7 else 0.9 if h < 9 else 0.08 if h < 17 else 0.05 for h in range(24))
PARK_ARRIVE_PER_H = tuple(
    0.03 if h < 7 else 0.1 if h < 9 else 0.15 if h < 17 else 1.0 if h < 20 else 0.4 if h < 23 else 0.05
    for h in range(24)
)
FIRE_LANE_PER_H = tuple(0.04 if 8 <= h < 22 else 0.01 for h in range(24))
SERVICE_HOURS = tuple(1.0 if 8 <= h < 20 else 0.0 for h in range(24))


@dataclass(frozen=True, slots=True, kw_only=True)
class BehaviourConfig:
    seed: int = 1
    zone: str = "Asia/Shanghai"
    doors: bool = True
    parking: bool = True
    sos_per_day: float = 1 / 30
    false_press_per_day: float = 1 / 120
    service_per_day: float = 1 / 7
    #: Demo: besides the realistic rate, an SOS somewhere in the community every this many
    #: simulated seconds on average (``None``: off).
    sos_every_s: float | None = None
    heartbeats: bool = True
    heartbeat_jitter: float = 0.02
    battery_drain: bool = True
    battery_start: tuple[float, float] = (35.0, 100.0)
    drain_per_day: tuple[float, float] = (0.02, 0.2)
    fast_drain_share: float = 0.03
    fast_drain_per_day: tuple[float, float] = (4.0, 12.0)
    offline_per_day: float = 1 / 10
    offline_s: tuple[float, float] = (600.0, 6 * 3600.0)
    tamper_per_day: float = 1 / 60
    broken_gateways: int = 1
    garbage_per_hour: float = 2.0

    @classmethod
    def quiet(cls, *, seed: int = 1, zone: str = "Asia/Shanghai") -> BehaviourConfig:
        """Heartbeats only, batteries steady: the background of a scenario."""
        return cls(
            seed=seed,
            zone=zone,
            doors=False,
            parking=False,
            sos_per_day=0.0,
            false_press_per_day=0.0,
            service_per_day=0.0,
            battery_drain=False,
            battery_start=(90.0, 90.0),
            offline_per_day=0.0,
            tamper_per_day=0.0,
            broken_gateways=0,
        )


class _Kind(StrEnum):
    HEARTBEAT = "heartbeat"
    BATTERY = "battery"
    DOOR_OPEN = "door_open"
    DOOR_CLOSE = "door_close"
    PARK = "park"
    LANE_ARRIVE = "lane_arrive"
    LANE_LEAVE = "lane_leave"
    SOS = "sos"
    FALSE = "false"
    SERVICE = "service"
    OFFLINE = "offline"
    ONLINE = "online"
    TAMPER = "tamper"
    TAMPER_CLEAR = "tamper_clear"
    DIE = "die"
    GARBAGE = "garbage"
    DEMO_SOS = "demo_sos"


@dataclass(frozen=True, slots=True)
class Emission:
    """What one device did at one moment, and the messages that say it."""

    at: float
    device: str
    act: Act
    messages: tuple[Message, ...]


@dataclass(slots=True)
class _State:
    device: SimDevice
    rng: random.Random
    battery0: float
    drain_per_s: float
    since: float
    is_open: bool = False
    occupied: bool = False
    tamper: bool = False
    online: bool = True
    dead: bool = False
    silenced: bool = False
    counter: int = 0
    linkquality: int = 120
    rssi: float = -85.0
    hb_gen: int = 0

    def battery(self, at: float) -> float:
        return max(0.0, self.battery0 - self.drain_per_s * (at - self.since))

    def set_battery(self, at: float, value: float) -> None:
        self.battery0, self.since = value, at


@dataclass(slots=True)
class BehaviourStats:
    emitted: dict[str, int] = field(default_factory=dict)
    dead: int = 0


class Behaviour:
    """The devices' behaviour from ``start`` on; call :meth:`step` with increasing simulated times."""

    def __init__(
        self,
        *,
        devices: Sequence[SimDevice],
        start: float,
        config: BehaviourConfig | None = None,
        stamp: Callable[[float], float] | None = None,
    ) -> None:
        self.config = cfg = config or BehaviourConfig()
        #: Simulated time → the time written into messages. The demo runs the community faster
        #: than the hub's (honest) clock and stamps messages with the real moment they go out.
        self._stamp = stamp or (lambda at: at)
        self.zone = ZoneInfo(cfg.zone)
        self.now = start
        self._queue: list[tuple[float, int, str, _Kind, int]] = []
        self._seq = 0
        self._states: dict[str, _State] = {}
        self.stats = BehaviourStats()
        self._hours: dict[int, int] = {}
        for device in devices:
            rng = random.Random(f"{cfg.seed}/{device.id}")  # noqa: S311 - simulation
            battery = rng.uniform(*cfg.battery_start) if device.battery_powered else 100.0
            drain = 0.0
            if cfg.battery_drain and device.battery_powered:
                fast = rng.random() < cfg.fast_drain_share
                drain = rng.uniform(*(cfg.fast_drain_per_day if fast else cfg.drain_per_day)) / DAY
            state = _State(device, rng, battery, drain, start, linkquality=rng.randrange(60, 200))
            state.rssi = -rng.uniform(70, 115)
            hour = self._local_hour(start)
            state.occupied = device.place_kind == "parking_space" and (hour < 7 or hour >= 20)
            self._states[device.id] = state
            self._schedule_device(state, start)
        self._community_rng = random.Random(f"{cfg.seed}/community")  # noqa: S311 - simulation
        gateways = sorted({d.gateway for d in devices if d.gateway})
        self.broken_gateways = tuple(
            sorted(self._community_rng.sample(gateways, k=min(cfg.broken_gateways, len(gateways))))
        )
        self._behind = {g: [d.id for d in devices if d.gateway == g] for g in self.broken_gateways}
        for gateway in self.broken_gateways:
            self._garbage_next(gateway, start)
        self._buttons = [d.id for d in devices if d.kind == "sos_button"]
        if cfg.sos_every_s and self._buttons:
            self._push(start + self._community_rng.expovariate(1.0 / cfg.sos_every_s), "", _Kind.DEMO_SOS)

    # -- time helpers ----------------------------------------------------------------------------

    def _local_hour(self, at: float) -> int:
        """The local hour at ``at`` (cached per UTC quarter hour: zone offsets are whole quarters)."""
        key = int(at // 900)
        hour = self._hours.get(key)
        if hour is None:
            if len(self._hours) > 4096:
                self._hours.clear()
            hour = self._hours[key] = datetime.fromtimestamp(key * 900, self.zone).hour
        return hour

    def _push(self, at: float, device: str, kind: _Kind, gen: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, device, kind, gen))

    def _next_nhpp(
        self, rng: random.Random, after: float, per_hour: Sequence[float], scale: float = 1.0
    ) -> float:
        """The next event of a Poisson process whose rate follows the hour of day (thinning)."""
        peak = max(per_hour) * scale
        if peak <= 0:
            return math.inf
        t = after
        for _ in range(100_000):
            t += rng.expovariate(peak / 3600.0)
            if rng.random() * peak < per_hour[self._local_hour(t)] * scale:
                return t
        return math.inf

    @staticmethod
    def _next_poisson(rng: random.Random, after: float, per_day: float) -> float:
        return after + rng.expovariate(per_day / DAY) if per_day > 0 else math.inf

    # -- scheduling --------------------------------------------------------------------------------

    def _schedule_device(self, s: _State, start: float) -> None:
        cfg, d, rng = self.config, s.device, s.rng
        if cfg.heartbeats:
            self._push(start + rng.uniform(0.0, d.heartbeat_s), d.id, _Kind.HEARTBEAT, s.hb_gen)
            if d.battery_powered and formats.supports(d, Act.BATTERY):
                self._push(start + rng.uniform(0.0, DAY), d.id, _Kind.BATTERY)
        if s.drain_per_s > 0:
            self._push(s.since + s.battery0 / s.drain_per_s, d.id, _Kind.DIE)
        if d.kind == "door_sensor" and cfg.doors:
            self._door_next(s, start)
        if d.kind == "parking_sensor" and cfg.parking:
            kind = _Kind.LANE_ARRIVE if d.place_kind == "fire_lane" else _Kind.PARK
            self._park_next(s, start, kind)
        if d.kind == "sos_button":
            self._push(self._next_poisson(rng, start, cfg.sos_per_day), d.id, _Kind.SOS)
            self._push(self._next_poisson(rng, start, cfg.false_press_per_day), d.id, _Kind.FALSE)
            if d.green_key and cfg.service_per_day > 0:
                at = self._next_nhpp(rng, start, SERVICE_HOURS, cfg.service_per_day / 12.0)
                self._push(at, d.id, _Kind.SERVICE)
        self._push(self._next_poisson(rng, start, cfg.offline_per_day), d.id, _Kind.OFFLINE)
        if d.tamper_capable:
            self._push(self._next_poisson(rng, start, cfg.tamper_per_day), d.id, _Kind.TAMPER)

    def _door_next(self, s: _State, after: float) -> None:
        place = s.device.place_kind
        if place == "fire_exit":
            at = s.rng.expovariate(FIRE_EXIT_PER_H / 3600.0) + after
        else:
            at = self._next_nhpp(
                s.rng, after, HOUSEHOLD_DOOR_PER_H, ENTRANCE_FACTOR if place == "entrance" else 1.0
            )
        self._push(at, s.device.id, _Kind.DOOR_OPEN)

    def _park_next(self, s: _State, after: float, kind: _Kind) -> None:
        if kind is _Kind.LANE_ARRIVE:
            self._push(self._next_nhpp(s.rng, after, FIRE_LANE_PER_H), s.device.id, kind)
        else:
            rates = PARK_LEAVE_PER_H if s.occupied else PARK_ARRIVE_PER_H
            self._push(self._next_nhpp(s.rng, after, rates), s.device.id, kind)

    def _garbage_next(self, gateway: str, after: float) -> None:
        rate = self.config.garbage_per_hour
        if rate > 0:
            self._push(after + self._community_rng.expovariate(rate / 3600.0), gateway, _Kind.GARBAGE)

    # -- public API ----------------------------------------------------------------------------------

    def step(self, now: float) -> list[Message]:
        """Every message due up to simulated time ``now``, in time order."""
        return [m for e in self.emissions(now) for m in e.messages]

    def emissions(self, now: float) -> list[Emission]:
        """Like :meth:`step`, with who did what (ground truth for statistics and scenarios)."""
        out: list[Emission] = []
        while self._queue and self._queue[0][0] <= now:
            at, _, device_id, kind, gen = heapq.heappop(self._queue)
            self._fire(at, device_id, kind, gen, out)
        self.now = max(self.now, now)
        return out

    def next_at(self) -> float | None:
        """When the next thing happens (``None``: never)."""
        return self._queue[0][0] if self._queue else None

    def act(self, device_id: str, act: Act, at: float, *, battery: float | None = None) -> Emission:
        """Make a device do ``act`` now (a scenario's step), in its family's format."""
        s = self._states[device_id]
        if battery is not None:
            s.set_battery(at, battery)
        if act is Act.DOOR_OPEN:
            s.is_open = True
        elif act is Act.DOOR_CLOSE:
            s.is_open = False
        elif act is Act.OCCUPIED:
            s.occupied = True
        elif act is Act.FREE:
            s.occupied = False
        elif act is Act.TAMPER:
            s.tamper = True
        elif act is Act.TAMPER_CLEAR:
            s.tamper = False
        elif act is Act.OFFLINE:
            s.online = False
        elif act is Act.ONLINE:
            s.online, s.silenced = True, False
        return self._emit(s, act, at)

    def silence(self, device_id: str) -> None:
        """The device stops reporting (flat battery, unplugged, out of range) until :meth:`resume`."""
        self._states[device_id].silenced = True

    def resume(self, device_id: str) -> None:
        self._states[device_id].silenced = False

    def battery(self, device_id: str, at: float) -> float:
        return self._states[device_id].battery(at)

    def is_dead(self, device_id: str) -> bool:
        return self._states[device_id].dead

    # -- firing ----------------------------------------------------------------------------------------

    def _reading(self, s: _State, at: float) -> Reading:
        s.counter += 1
        return Reading(
            battery_pct=round(s.battery(at), 1),
            is_open=s.is_open,
            occupied=s.occupied,
            tamper=s.tamper,
            linkquality=max(5, min(255, s.linkquality + s.rng.randrange(-15, 16))),
            rssi=round(s.rssi + s.rng.uniform(-4, 4), 1),
            snr=round(s.rng.uniform(-5, 11), 1),
            counter=s.counter,
            nonce=s.rng.getrandbits(31),
        )

    def _emit(self, s: _State, act: Act, at: float) -> Emission:
        messages: tuple[Message, ...] = ()
        if formats.supports(s.device, act):
            messages = tuple(
                formats.build(s.device, act, self._reading(s, at), self._stamp(at), zone=self.zone)
            )
        self.stats.emitted[act.value] = self.stats.emitted.get(act.value, 0) + 1
        return Emission(at, s.device.id, act, messages)

    def _fire(self, at: float, device_id: str, kind: _Kind, gen: int, out: list[Emission]) -> None:  # noqa: PLR0915
        cfg = self.config
        if kind is _Kind.GARBAGE:
            victims = self._behind.get(device_id, [])
            if victims:
                s = self._states[victims[self._community_rng.randrange(len(victims))]]
                out.append(self._emit(s, Act.GARBAGE, at))
            self._garbage_next(device_id, at)
            return
        if kind is _Kind.DEMO_SOS:
            s = self._states[self._buttons[self._community_rng.randrange(len(self._buttons))]]
            if self._speaks(s):
                out.append(self._emit(s, Act.SOS_PRESS, at))
            assert cfg.sos_every_s is not None
            self._push(at + self._community_rng.expovariate(1.0 / cfg.sos_every_s), "", _Kind.DEMO_SOS)
            return
        s = self._states[device_id]
        d, rng = s.device, s.rng
        if s.dead:
            return
        if kind is _Kind.DIE:
            # The last gasp: a report at 0 %, then nothing ever again.
            if self._speaks(s) and formats.supports(d, Act.BATTERY):
                out.append(self._emit(s, Act.BATTERY, at))
            s.dead = True
            self.stats.dead += 1
            return
        if kind is _Kind.HEARTBEAT:
            if gen != s.hb_gen:
                return
            if self._speaks(s):
                out.append(self._emit(s, Act.HEARTBEAT, at))
            jitter = 1.0 + rng.uniform(-cfg.heartbeat_jitter, cfg.heartbeat_jitter)
            self._push(at + d.heartbeat_s * jitter, d.id, _Kind.HEARTBEAT, s.hb_gen)
        elif kind is _Kind.BATTERY:
            if self._speaks(s):
                out.append(self._emit(s, Act.BATTERY, at))
            self._push(at + DAY * (1.0 + rng.uniform(-0.05, 0.05)), d.id, _Kind.BATTERY)
        elif kind is _Kind.DOOR_OPEN:
            s.is_open = True
            if self._speaks(s):
                out.append(self._emit(s, Act.DOOR_OPEN, at))
            if d.place_kind == "entrance":
                hold = rng.uniform(360, 1200) if rng.random() < 0.02 else rng.uniform(5, 20)
            elif d.place_kind == "fire_exit":
                hold = rng.uniform(20, 300)
            else:
                hold = rng.uniform(5, 40)
            self._push(at + hold, d.id, _Kind.DOOR_CLOSE)
        elif kind is _Kind.DOOR_CLOSE:
            s.is_open = False
            if self._speaks(s):
                out.append(self._emit(s, Act.DOOR_CLOSE, at))
            self._door_next(s, at)
        elif kind is _Kind.PARK:
            s.occupied = not s.occupied
            if self._speaks(s):
                out.append(self._emit(s, Act.OCCUPIED if s.occupied else Act.FREE, at))
            self._park_next(s, at, _Kind.PARK)
        elif kind is _Kind.LANE_ARRIVE:
            s.occupied = True
            if self._speaks(s):
                out.append(self._emit(s, Act.OCCUPIED, at))
            stay = rng.uniform(300, 900) if rng.random() < 0.1 else rng.uniform(20, 150)
            self._push(at + stay, d.id, _Kind.LANE_LEAVE)
        elif kind is _Kind.LANE_LEAVE:
            s.occupied = False
            if self._speaks(s):
                out.append(self._emit(s, Act.FREE, at))
            self._park_next(s, at, _Kind.LANE_ARRIVE)
        elif kind in (_Kind.SOS, _Kind.FALSE):
            act = Act.SOS_PRESS if kind is _Kind.SOS else Act.FALSE_PRESS
            if self._speaks(s):
                out.append(self._emit(s, act, at))
            per_day = cfg.sos_per_day if kind is _Kind.SOS else cfg.false_press_per_day
            self._push(self._next_poisson(rng, at, per_day), d.id, kind)
        elif kind is _Kind.SERVICE:
            if self._speaks(s):
                out.append(self._emit(s, Act.SERVICE_REQUEST, at))
            self._push(self._next_nhpp(rng, at, SERVICE_HOURS, cfg.service_per_day / 12.0), d.id, kind)
        elif kind is _Kind.OFFLINE:
            if self._speaks(s):
                out.append(self._emit(s, Act.OFFLINE, at))
            s.online = False
            self._push(at + rng.uniform(*cfg.offline_s), d.id, _Kind.ONLINE)
        elif kind is _Kind.ONLINE:
            s.online = True
            if self._speaks(s):
                out.append(self._emit(s, Act.ONLINE, at))
            self._push(self._next_poisson(rng, at, cfg.offline_per_day), d.id, _Kind.OFFLINE)
        elif kind is _Kind.TAMPER:
            s.tamper = True
            if self._speaks(s):
                out.append(self._emit(s, Act.TAMPER, at))
            self._push(at + rng.uniform(60, 1800), d.id, _Kind.TAMPER_CLEAR)
        elif kind is _Kind.TAMPER_CLEAR:
            s.tamper = False
            if self._speaks(s):
                out.append(self._emit(s, Act.TAMPER_CLEAR, at))
            self._push(self._next_poisson(rng, at, cfg.tamper_per_day), d.id, _Kind.TAMPER)

    @staticmethod
    def _speaks(s: _State) -> bool:
        return s.online and not s.silenced and not s.dead


def simulate(
    devices: Iterable[SimDevice], *, start: float, end: float, config: BehaviourConfig | None = None
) -> list[Emission]:
    """Every emission from ``start`` to ``end`` (a convenience for tests and tools)."""
    behaviour = Behaviour(devices=list(devices), start=start, config=config)
    return behaviour.emissions(end)
