"""Each roster person's reply key: the secret their app signs MQTT replies with.

The broker's ACL keeps other credentials off a person's reply topic, but the hub does not
rely on the broker alone (a misconfigured broker, a shared password, a broker without
ACLs): every reply must carry an HMAC made with the person's key (``docs/topics.md``).

The keys live in one YAML file (default ``<data_dir>/reply-keys.yaml``), created ``0600``,
written atomically, and read again whenever it changes on disk, so ``linli reply-key issue``
takes effect on a running hub without a restart. An operator provisions a person's key to
that person's app only (it is shown once when issued).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from pathlib import Path

import yaml

from hub.errors import ConfigError
from hub.files import write_private

log = logging.getLogger(__name__)

FILE_NAME = "reply-keys.yaml"
#: 32 random bytes, base64url (43 characters); the HMAC key is this text's ASCII bytes.
KEY_BYTES = 32
_HEADER = (
    "# Linli worker reply keys (person id -> key). Keep private (0600).\n"
    "# Give each key to that person's app only; rotate with `linli reply-key issue --person ID`.\n"
)


class ReplyKeys:
    """The keys file: read lazily, re-read when its size or mtime changes."""

    def __init__(self, *, path: Path) -> None:
        self.path = path
        self._keys: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None

    def _reload(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        try:
            self._keys = self._read()
        except ConfigError as exc:
            # Keep the keys we had: a half-edited file must not lock every worker out.
            log.error("%s; keeping the previously loaded reply keys", exc)
        self._stamp = stamp

    def _read(self) -> dict[str, str]:
        try:
            loaded = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            # Not UTF-8 either: read on the MQTT message path, it must be the ConfigError that
            # keeps the keys already loaded (found in review).
            raise ConfigError(f"cannot read reply keys: {exc}", source=f"file {self.path}") from None
        keys = loaded.get("keys", {}) if isinstance(loaded, dict) else None
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()
        ):
            raise ConfigError(
                "reply keys must be a mapping 'keys: {person: key}'", source=f"file {self.path}"
            )
        return dict(keys)

    def key_for(self, person: str) -> bytes | None:
        """The HMAC key of ``person``, or ``None`` if none was issued."""
        self._reload()
        key = self._keys.get(person)
        return key.encode("ascii") if key is not None else None

    def people(self) -> list[str]:
        self._reload()
        return sorted(self._keys)

    def _write(self, keys: dict[str, str]) -> None:
        text = _HEADER + yaml.safe_dump({"keys": dict(sorted(keys.items()))}, allow_unicode=True)
        write_private(self.path, text.encode("utf-8"))
        self._stamp = None

    def issue(self, person: str) -> str:
        """Create or rotate ``person``'s key; returns it (the old key stops working at once)."""
        keys = self._read() if self.path.exists() else {}
        keys[person] = secrets.token_urlsafe(KEY_BYTES)
        self._write(keys)
        return keys[person]

    def revoke(self, person: str) -> bool:
        keys = self._read() if self.path.exists() else {}
        if keys.pop(person, None) is None:
            return False
        self._write(keys)
        return True

    def ensure(self, people: Iterable[str]) -> dict[str, str]:
        """Issue keys for those of ``people`` who have none (the demo); returns every key."""
        keys = self._read() if self.path.exists() else {}
        missing = [p for p in people if p not in keys]
        for person in missing:
            keys[person] = secrets.token_urlsafe(KEY_BYTES)
        if missing or not self.path.exists():
            self._write(keys)
        return keys
