"""Errors raised by the hub; all derive from :class:`adapters.errors.LinliError`."""

from __future__ import annotations

from adapters.errors import LinliError


class HubError(LinliError):
    """Base class of the hub's errors."""


class ConfigError(HubError):
    """Configuration is invalid: names the key and where it came from (file or variable)."""

    def __init__(self, message: str, *, key: str = "", source: str = "") -> None:
        where = ", ".join(part for part in (f"key {key!r}" if key else "", source) if part)
        super().__init__(f"{message}" + (f" ({where})" if where else ""))
        self.key = key
        self.source = source
        self.message = message


class RegistryError(HubError):
    """The community registry file is invalid: names the file and the field."""

    def __init__(self, message: str, *, file: str, field: str = "") -> None:
        super().__init__(f"{file}" + (f" field {field!r}" if field else "") + f": {message}")
        self.file = file
        self.field = field


class StoreError(HubError):
    """The store cannot be opened or written."""


class MqttError(HubError):
    """The MQTT connection failed (bad URL, refused, unreachable)."""
