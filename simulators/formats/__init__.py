"""Per-family wire formats: topic and payload for each simulated act, exactly like the samples.

One module per family (``zigbee2mqtt``, ``ttn_v3``, ``chirpstack_v4``, ``tasmota``, ``native``);
:func:`build` dispatches on the device's family. A family that has no way to say an act (a
Tasmota switch has no battery, a LoRaWAN network server publishes no "offline") raises
:class:`~simulators.types.UnsupportedActError`; :func:`supports` asks first.
"""

from __future__ import annotations

from types import ModuleType
from typing import Protocol, cast
from zoneinfo import ZoneInfo

from simulators.community import SimDevice
from simulators.formats import chirpstack_v4, native, tasmota, ttn_v3, zigbee2mqtt
from simulators.types import Act, Family, Message, Reading, UnsupportedActError

__all__ = ["build", "supports"]


class _Builder(Protocol):
    def supports(self, device: SimDevice, act: Act) -> bool: ...

    def build(
        self, device: SimDevice, act: Act, reading: Reading, ts: float, zone: ZoneInfo
    ) -> list[Message]: ...


_RAW: dict[Family, ModuleType] = {
    Family.ZIGBEE2MQTT: zigbee2mqtt,
    Family.TTN_V3: ttn_v3,
    Family.CHIRPSTACK_V4: chirpstack_v4,
    Family.TASMOTA: tasmota,
    Family.NATIVE: native,
}
_MODULES: dict[Family, _Builder] = {f: cast(_Builder, m) for f, m in _RAW.items()}
SHANGHAI = ZoneInfo("Asia/Shanghai")


def supports(device: SimDevice, act: Act) -> bool:
    """Whether ``device`` can say ``act`` on the wire."""
    return _MODULES[device.family].supports(device, act)


def build(
    device: SimDevice, act: Act, reading: Reading, ts: float, *, zone: ZoneInfo = SHANGHAI
) -> list[Message]:
    """The messages ``device`` publishes for ``act`` at Unix time ``ts``."""
    module = _MODULES[device.family]
    if not module.supports(device, act):
        raise UnsupportedActError(
            f"{device.family.value} device {device.id} ({device.model}) cannot {act.value}"
        )
    return module.build(device, act, reading, ts, zone)
