"""The demo's first minute: a short script so a newcomer sees life at once (issue 15).

Without it the community runs at its realistic rates and the console stays empty for minutes.
The script is data (real seconds after start → a device and what it does); the runner plays it
on top of the behaviour model, in the families' real wire formats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from simulators.community import SimDevice
from simulators.types import Act


@dataclass(frozen=True, slots=True, kw_only=True)
class Cue:
    after_s: float
    device: str
    act: Act
    battery: float | None = None


#: A flat-ish battery: below the rules' warning thresholds, above the dead ones.
LOW_BATTERY_PCT = 8.0


def _first(
    devices: Sequence[SimDevice], kind: str, *, skip: int = 0, family: str | None = None
) -> str | None:
    found = [d.id for d in devices if d.kind == kind and (family is None or d.family.value == family)]
    return found[skip] if len(found) > skip else None


def opening(devices: Sequence[SimDevice]) -> tuple[Cue, ...]:
    """What happens in the demo's first minute: an SOS at 3 s, then doors, parking, a low battery,
    a false press. Devices are the first of their kind (deterministic for a seed's community)."""
    cues: list[Cue] = []
    sos = _first(devices, "sos_button", family="zigbee2mqtt")
    door = _first(devices, "door_sensor", family="zigbee2mqtt")
    parking = _first(devices, "parking_sensor")
    if sos is not None:
        cues.append(Cue(after_s=3.0, device=sos, act=Act.SOS_PRESS))
    if door is not None:
        cues += [
            Cue(after_s=8.0, device=door, act=Act.DOOR_OPEN),
            Cue(after_s=14.0, device=door, act=Act.DOOR_CLOSE),
        ]
    if parking is not None:
        cues.append(Cue(after_s=11.0, device=parking, act=Act.OCCUPIED))
    battery = next(
        (d.id for d in devices if d.battery_powered and d.kind == "door_sensor" and d.id != door), None
    )
    if battery is not None:
        cues.append(Cue(after_s=18.0, device=battery, act=Act.BATTERY, battery=LOW_BATTERY_PCT))
    false_press = _first(devices, "sos_button", skip=1, family="zigbee2mqtt")
    if false_press is not None:
        cues.append(Cue(after_s=25.0, device=false_press, act=Act.FALSE_PRESS))
    return tuple(sorted(cues, key=lambda c: c.after_s))
