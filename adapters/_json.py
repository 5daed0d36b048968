"""Shared helpers for JSON payloads: parsing, typed field access, timestamps."""

from __future__ import annotations

import functools
import math
from datetime import datetime
from typing import Any

import orjson

from adapters.errors import DecodeError
from adapters.events import IMPLAUSIBLE, WHOLE_READINGS

#: A device clock more than this far ahead of the receive time is not trusted at all (the
#: receive time is used and the event says ``ts_clamped``); one ahead by less is ordinary
#: drift, but its time is still capped at the receive time (see :func:`event_time`).
MAX_FUTURE_SKEW_S = 300.0
#: A device time before 2000-01-01 is a placeholder (TTS simulated uplinks carry
#: ``0001-01-01T00:00:00Z``; an unset RTC counts from 1970), not a time: use the receive time.
MIN_PLAUSIBLE_TS = 946_684_800.0
#: A battery voltage above this is no battery Linli knows (cells are 1.5–3.6 V, packs ≤ 12 V);
#: with the 0–100 % range it separates a reading from a sentinel or a garbled field.
MAX_BATTERY_VOLTS = 100.0

#: Battery voltages as one float object each, as the whole percents are
#: (:data:`adapters.events.WHOLE_READINGS`): a hub keeps each device's last reading, and devices
#: report a few distinct values (docs/benchmarks.md, "Thirty-seventh pass"). Typed
#: ``float | None`` for the same reason as that table. Built once, never changed.
#: 1.000–4.500 V in millivolt steps: coin cells, AA/AAA pairs, lithium thionyl chloride.
_MILLIVOLTS_FROM = 1000
_VOLTS: tuple[float | None, ...] = tuple(mv / 1000.0 for mv in range(_MILLIVOLTS_FROM, 4501))


def parse_object(payload: bytes, topic: str) -> dict[str, Any]:
    """Parse a JSON object or raise ``DecodeError`` with a stable reason."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed_json", str(exc), topic=topic) from None
    if not isinstance(doc, dict):
        raise DecodeError("not_an_object", f"expected a JSON object, got {type(doc).__name__}", topic=topic)
    return doc


def as_number(value: object, field: str, topic: str) -> float | None:
    """A numeric field; numeric strings are accepted (old Zigbee2MQTT sent ``"100.00"``)."""
    if value is None:
        return None
    if type(value) is float or type(value) is int:  # the common case first: one check, no isinstance chain
        number = float(value)
        if math.isfinite(number):
            return number
    if isinstance(value, bool):
        raise DecodeError("wrong_type", f"{field} must be a number, got bool", topic=topic)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise DecodeError(
                "wrong_type", f"{field} must be a number, got {value[:40]!r}", topic=topic
            ) from None
    else:
        raise DecodeError("wrong_type", f"{field} must be a number, got {type(value).__name__}", topic=topic)
    if not math.isfinite(number):
        raise DecodeError("wrong_type", f"{field} is not a finite number", topic=topic)
    return number


def as_bool(value: object, field: str, topic: str) -> bool:
    if isinstance(value, bool):
        return value
    raise DecodeError("wrong_type", f"{field} must be true or false, got {type(value).__name__}", topic=topic)


@functools.lru_cache(maxsize=4096)
def _iso_timestamp(text: str) -> float | None:
    """RFC 3339 with an offset → epoch seconds; ``None`` without an offset or when invalid.

    Memoised (a pure function): a gateway stamps many messages with the same second.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):  # pragma: no cover - platform dependent
        return None


def event_time(device_ts: object, received: float, topic: str) -> tuple[float, bool]:
    """Choose the event time: the device's when it parses and is not after the receive time.

    Returns ``(ts, clamped)``. The hub never believes a device time later than its own
    receive time: an event cannot have happened after it arrived, and rule state ordered by
    a time from the future misjudges every real event after it (an SOS dated +299 s makes
    the real presses "late", a door event dated ahead makes the real opening "old"). So a
    time ahead by at most :data:`MAX_FUTURE_SKEW_S` becomes the receive time *without*
    ``clamped`` (a device clock a little fast is ordinary drift, not a fault worth flagging
    on every message); ``clamped`` is true only when a device time was present but more
    than the skew ahead (a wrong clock, or milliseconds read as seconds), so the caller can
    record that the receive time was used instead.
    """
    if device_ts is None:
        return received, False
    ts: float | None = None
    if isinstance(device_ts, str):
        ts = _iso_timestamp(device_ts)
    elif isinstance(device_ts, int | float) and not isinstance(device_ts, bool):
        # Zigbee2MQTT's `last_seen: epoch` is in milliseconds.
        ts = device_ts / 1000.0 if device_ts > 1e11 else float(device_ts)
        if not math.isfinite(ts):
            ts = None
    return device_time(ts, received)


def device_time(ts: float | None, received: float) -> tuple[float, bool]:
    """``(ts, clamped)`` of a parsed device time (``None``: none or unparseable); see :func:`event_time`."""
    if ts is None or ts < MIN_PLAUSIBLE_TS:
        return received, False
    if ts > received:
        return received, ts > received + MAX_FUTURE_SKEW_S
    return ts, False


def _shared(value: float | None, table: tuple[float | None, ...], scale: float, first: int) -> float | None:
    """``table``'s object equal to ``value`` (entry ``round(value × scale) − first``), else ``value``.

    Written so that nothing narrows ``value`` or the entry to ``float`` outside an expression:
    compiled, either would be returned as a new float object (tests/test_zigbee2mqtt.py checks
    both builds).
    """
    if value is not None:
        at = round(value * scale) - first
        if 0 <= at < len(table) and table[at] == value:  # the same number, not a rounded one
            return table[at]
    return value


def put_volts(attrs: dict[str, float | bool | str], volts: float | None) -> None:
    """``attrs["volts"] = volts`` when there is a reading, the object itself.

    Compiled, ``if volts is not None: attrs["volts"] = volts`` narrows ``volts`` to a C double
    and stores a new float: the shared reading (:data:`_VOLTS`) would be lost to every event.
    ``Any`` is never narrowed to ``float``.
    """
    kept: Any = volts
    if kept is not None:
        attrs["volts"] = kept


def plausible_battery(
    percent: float | None, volts: float | None, attrs: dict[str, float | bool | str]
) -> tuple[float | None, float | None]:
    """``(percent, volts)`` with impossible readings dropped and named in ``attrs[IMPLAUSIBLE]``.

    A percentage outside 0–100 or a voltage ≤ 0 or above :data:`MAX_BATTERY_VOLTS` is not a
    reading (``-1`` is a firmware's "unknown", ``1e300`` garbage): believed, it raised the
    battery-low alerts or cleared them. Dropping only the field keeps the report's other
    facts (a door, a press); the attribute keeps the drop visible, as ``ts_clamped`` does.
    """
    bad_percent = percent is not None and not 0.0 <= percent <= 100.0
    bad_volts = volts is not None and not 0.0 < volts <= MAX_BATTERY_VOLTS
    if bad_percent or bad_volts:
        dropped = []
        if bad_percent:
            dropped.append(f"battery {percent:g} % outside 0-100")
            percent = None
        if bad_volts:
            dropped.append(f"battery {volts:g} V outside (0, {MAX_BATTERY_VOLTS:g}]")
            volts = None
        attrs[IMPLAUSIBLE] = "; ".join(dropped)
    # A common reading is shared, the good one beside an impossible one too (``battery: -1``,
    # firmware's "unknown", beside a good voltage).
    return _shared(percent, WHOLE_READINGS, 1.0, 0), _shared(volts, _VOLTS, 1000.0, _MILLIVOLTS_FROM)
