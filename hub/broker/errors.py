"""Errors raised by the embedded broker (local roots; re-rooted by the hub later)."""

from __future__ import annotations


class BrokerError(Exception):
    """Base class of every error the embedded broker raises."""


class BrokerStateError(BrokerError):
    """The broker was used in the wrong lifecycle state (e.g. ``port`` before ``start()``)."""


class BrokerConfigError(BrokerError, ValueError):
    """A constructor argument is out of range."""


class MalformedPacketError(BrokerError):
    """Bytes on the wire that are not a valid MQTT 3.1.1 control packet; the connection is closed."""


class ProtocolViolationError(BrokerError):
    """A well-formed packet that breaks a protocol rule; the connection is closed [MQTT-4.8.0-1]."""


class UnsupportedProtocolError(BrokerError):
    """CONNECT with a protocol level the broker does not speak; answered with CONNACK code 1."""

    def __init__(self, *, name: str, level: int) -> None:
        super().__init__(f"unsupported protocol {name!r} level {level}")
        self.name = name
        self.level = level
