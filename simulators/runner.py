"""Run a simulated community against a broker: the behaviour model, in (possibly faster) time.

Simulated time starts at ``start`` (default: now) and runs ``speed`` simulated seconds per real
second; ``on_time`` is told the simulated time on every tick, so a hub run in the same process
(the demo) can make its clock follow. ``sos_every_s`` adds demo SOS presses, on average one
every that many *real* seconds, on top of the realistic (rare) ones. SOS presses and service
requests go out at QoS 1, as installations configure emergency buttons; the rest at QoS 0.

``pace`` runs the *community* faster without touching anybody's clock: the behaviour model
moves ``pace`` simulated seconds per real second (a shift's doors, parking and batteries in
minutes), while every message is stamped with the real moment it is sent, so a hub on the
wall clock sees an honest, busy community. ``opening`` cues (:mod:`simulators.opening`) play
at fixed real seconds after the start. ``shift`` follows a hub clock that a scenario moved
ahead of the wall clock (the demo's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gmqtt import Client
from gmqtt.mqtt.constants import MQTTv311

from simulators import formats
from simulators.behaviour import Behaviour, BehaviourConfig
from simulators.community import SimDevice
from simulators.opening import Cue
from simulators.types import Act, Message

log = logging.getLogger(__name__)

Z2M_BASE = "zigbee2mqtt"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class SimStats:
    published: int = 0
    sos_presses: int = 0
    sim_time: float = 0.0


class CommunitySimulator:
    def __init__(
        self,
        *,
        broker: BrokerAddress,
        devices: tuple[SimDevice, ...],
        seed: int = 1,
        tick_s: float = 1.0,
        sos_every_s: float | None = 45.0,
        base_topic: str = Z2M_BASE,
        speed: float = 1.0,
        start: float | None = None,
        on_time: Callable[[float], None] | None = None,
        config: BehaviourConfig | None = None,
        pace: float = 1.0,
        opening: tuple[Cue, ...] = (),
        shift: Callable[[], float] | None = None,
    ) -> None:
        if speed <= 0 or pace <= 0:
            raise ValueError("speed and pace must be positive")
        self._broker = broker
        self._devices = devices
        self._tick = tick_s
        self._base = base_topic
        self.speed = speed
        self.pace = pace
        self._on_time = on_time
        self._start = time.time() if start is None else start
        self._opening = list(opening)
        self._shift = shift
        base_config = config or BehaviourConfig(seed=seed)
        demo = sos_every_s * speed * pace if sos_every_s else None
        self.behaviour = Behaviour(
            devices=devices,
            start=self._start,
            config=replace(base_config, seed=seed, sos_every_s=demo),
            stamp=self.stamp if pace != 1 or shift is not None else None,
        )
        self._client = Client(f"linli-sim-{seed}-{time.monotonic_ns() % 100000}", clean_session=True)
        if broker.username is not None:
            self._client.set_auth_credentials(broker.username, broker.password)
        self.stats = SimStats(sim_time=self._start)

    def sim_time(self, real_elapsed: float) -> float:
        """The community's time after ``real_elapsed`` real seconds."""
        return self._start + real_elapsed * self.speed * self.pace

    def stamp(self, at: float) -> float:
        """The community's time ``at`` → the (possibly scaled) clock the hub runs on.

        ``shift`` says how far the hub's clock has been moved ahead of the wall clock (the demo's,
        by a scenario): messages keep carrying the hub's present, so nothing looks days late.
        """
        ahead = self._shift() if self._shift is not None else 0.0
        return self._start + (at - self._start) / self.pace + ahead

    def play_opening(self, real_elapsed: float) -> None:
        """Play the opening cues due after ``real_elapsed`` real seconds (once each)."""
        while self._opening and self._opening[0].after_s <= real_elapsed:
            cue = self._opening.pop(0)
            at = self.sim_time(cue.after_s)
            emission = self.behaviour.act(cue.device, cue.act, at, battery=cue.battery)
            for message in emission.messages:
                self._publish(message)
            if cue.act in (Act.SOS_PRESS, Act.FALSE_PRESS):
                self.stats.sos_presses += 1
            log.info("demo opening: %s on %s", cue.act.value, cue.device)

    def _publish(self, message: Message) -> None:
        topic = message.topic
        if self._base != Z2M_BASE and topic.startswith(Z2M_BASE + "/"):
            topic = self._base + topic[len(Z2M_BASE) :]
        self._client.publish(topic, message.payload, qos=message.qos, retain=message.retain)
        self.stats.published += 1

    async def run(self) -> None:
        await self._client.connect(self._broker.host, self._broker.port, version=MQTTv311, keepalive=30)
        try:
            for device in self._devices:
                if formats.supports(device, Act.ONLINE) and device.family.value in ("zigbee2mqtt", "tasmota"):
                    for message in self.behaviour.act(device.id, Act.ONLINE, self._start).messages:
                        self._publish(message)
            began = time.monotonic()
            while True:
                elapsed = time.monotonic() - began
                now = self.sim_time(elapsed)
                if self._on_time is not None:
                    self._on_time(self.stamp(now))
                self.play_opening(elapsed)
                self.step(now)
                await asyncio.sleep(self._tick)
        finally:
            await self._client.disconnect()

    def press_sos(self, device: SimDevice, now: float) -> None:
        for message in self.behaviour.act(device.id, Act.SOS_PRESS, now).messages:
            self._publish(message)
        self.stats.sos_presses += 1
        log.info("simulated SOS press on %s", device.id)

    def step(self, now: float) -> None:
        """Publish everything the behaviour model says happened up to simulated time ``now``."""
        for emission in self.behaviour.emissions(now):
            if emission.act in (Act.SOS_PRESS, Act.FALSE_PRESS):
                self.stats.sos_presses += 1
            for message in emission.messages:
                self._publish(message)
        self.stats.sim_time = now
