"""``mqtt://user:pass@host:port`` and ``mqtts://…`` URLs for every command that talks to a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from hub.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class MqttUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, *, key: str = "mqtt.url") -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            # The scheme alone, never the URL: it may carry a password (found in review).
            got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise ConfigError(f"MQTT URL must start with mqtt:// or mqtts://, got {got}", key=key)
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ConfigError("MQTT URL has an invalid port", key=key) from None
        if not parts.hostname:
            raise ConfigError("MQTT URL has no host", key=key)
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def redacted(self) -> str:
        """The URL with the password hidden: the only form that may be logged or printed."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.redacted()
