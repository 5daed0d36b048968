"""Run a simulated community against a broker: devices report, doors open, elders press SOS.

A small behaviour model for the demo: door openings follow the time of day, parking
spaces flip now and then, and an SOS press comes on average every ``sos_every_s`` seconds
(far more often than in life, so the demo shows something). SOS presses go out at QoS 1,
as a Zigbee2MQTT installation configures for emergency buttons; the rest at QoS 0.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field

from gmqtt import Client
from gmqtt.mqtt.constants import MQTTv311

from simulators import zigbee2mqtt as z2m
from simulators.community import SimDevice

log = logging.getLogger(__name__)


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


class CommunitySimulator:
    def __init__(
        self,
        *,
        broker: BrokerAddress,
        devices: tuple[SimDevice, ...],
        seed: int = 1,
        tick_s: float = 1.0,
        sos_every_s: float = 45.0,
        base_topic: str = "zigbee2mqtt",
    ) -> None:
        self._broker = broker
        self._devices = devices
        self._rng = random.Random(seed)  # noqa: S311 - simulation
        self._tick = tick_s
        self._sos_every = sos_every_s
        self._base = base_topic
        self._client = Client(f"linli-sim-{seed}", clean_session=True)
        if broker.username is not None:
            self._client.set_auth_credentials(broker.username, broker.password)
        self._doors_open: dict[str, bool] = {}
        self._occupied: dict[str, bool] = {}
        self._battery = {d.id: float(self._rng.randrange(60, 101)) for d in devices}
        self.stats = SimStats()

    def _publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)
        self.stats.published += 1

    def _lq(self) -> int:
        return self._rng.randrange(40, 200)

    async def run(self) -> None:
        await self._client.connect(self._broker.host, self._broker.port, version=MQTTv311, keepalive=30)
        try:
            for device in self._devices:
                self._publish(
                    z2m.availability_topic(device.id, base=self._base),
                    z2m.availability(online=True),
                    retain=True,
                )
            while True:
                self.step(time.time())
                await asyncio.sleep(self._tick)
        finally:
            await self._client.disconnect()

    def press_sos(self, device: SimDevice, now: float) -> None:
        topic = z2m.state_topic(device.id, base=self._base)
        payload = z2m.sos_press(
            action=device.sos_action, battery=self._battery[device.id], linkquality=self._lq(), ts=now
        )
        self._publish(topic, payload, qos=1)
        self._publish(topic, z2m.action_cleared(linkquality=self._lq()))
        self.stats.sos_presses += 1
        log.info("simulated SOS press on %s", device.id)

    def step(self, now: float) -> None:
        """One tick of behaviour at wall-clock ``now``."""
        hour = time.localtime(now).tm_hour
        # Doors: busiest mornings and evenings, rare at night (per device per hour).
        door_rate = 0.3 if hour < 6 else (4.0 if 7 <= hour <= 9 or 17 <= hour <= 20 else 1.5)
        p_door = door_rate * self._tick / 3600.0 * 60  # sped up 60x for the demo
        for device in self._devices:
            topic = z2m.state_topic(device.id, base=self._base)
            if device.kind == "door_sensor":
                is_open = self._doors_open.get(device.id, False)
                if is_open or self._rng.random() < p_door:
                    self._doors_open[device.id] = not is_open
                    self._publish(
                        topic,
                        z2m.contact(
                            is_open=not is_open,
                            battery=self._battery[device.id],
                            voltage_mv=2900 + self._rng.randrange(200),
                            linkquality=self._lq(),
                            ts=now,
                        ),
                    )
            elif device.kind == "parking_sensor" and self._rng.random() < 0.02 * self._tick:
                occupied = not self._occupied.get(device.id, False)
                self._occupied[device.id] = occupied
                self._publish(
                    topic,
                    z2m.occupancy(
                        occupied=occupied, battery=self._battery[device.id], linkquality=self._lq(), ts=now
                    ),
                )
        sos_buttons = [d for d in self._devices if d.kind == "sos_button"]
        if sos_buttons and self._rng.random() < self._tick / self._sos_every:
            self.press_sos(self._rng.choice(sos_buttons), now)
