"""Per-user topic ACLs with Mosquitto's ``acl_file`` semantics: pure, no I/O.

One file format for both brokers: ``linli broker config`` writes it for Mosquitto, and the
embedded broker reads the same text, so a rule tested on one holds on the other.

* ``user <name>`` starts a block; the ``topic`` lines after it are that user's. ``topic``
  lines before any ``user`` line apply to anonymous clients.
* ``topic [read|write|readwrite|deny] <filter>`` (no access word: ``readwrite``).
* ``pattern [read|write|readwrite|deny] <filter>`` applies to every user, with ``%u``
  replaced by the user name and ``%c`` by the client id. A pattern whose ``%u``/``%c`` would
  hold ``+``, ``#`` or ``/`` (or an absent name) matches nothing here, so a client cannot widen
  its own rule by choosing its name. Mosquitto refuses ``+`` and ``#`` in them too but
  substitutes a ``/`` whole (found in review: a gateway named ``linli/110105001001`` wrote the
  workers' topics under it through ``%u/#``), so the shipped template gives such a name no
  pattern to use: gateway user names never hold a ``/`` (deploy/mosquitto/acl).
* ``deny`` wins over any grant; otherwise a topic is allowed if any rule of the user grants
  the access, and denied if none does (an ACL is a whitelist).

Writes are checked on PUBLISH (a denied message is acknowledged and dropped — MQTT 3.1.1 lets
a server do either that or disconnect [MQTT-3.3.5-2]; Mosquitto acknowledges). Reads are
checked per message at delivery, as Mosquitto does: a SUBSCRIBE to ``linli/#`` is granted, and
then nothing that the user may not read is ever sent to it, retained messages included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntFlag

from hub.broker.topics import is_valid_topic_filter, topic_matches
from hub.errors import BrokerConfigError


class Access(IntFlag):
    NONE = 0
    READ = 1
    WRITE = 2
    READWRITE = 3


_WORDS = {"read": Access.READ, "write": Access.WRITE, "readwrite": Access.READWRITE}
_DENY = "deny"


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One ``topic``/``pattern`` line: ``access`` NONE with ``deny`` set means a deny line."""

    topic_filter: str
    access: Access
    deny: bool = False


def _substitute(pattern: str, username: str | None, client_id: str) -> str | None:
    """``%u``/``%c`` in whole levels replaced; ``None`` if a value could widen the filter."""
    levels = pattern.split("/")
    for index, level in enumerate(levels):
        if level == "%u":
            value = username
        elif level == "%c":
            value = client_id
        else:
            continue
        if not value or any(ch in value for ch in "+#/"):
            return None
        levels[index] = value
    return "/".join(levels)


@dataclass(frozen=True, slots=True)
class AclRules:
    """Parsed ACL: per-user entries, anonymous entries, patterns."""

    users: dict[str, tuple[AclEntry, ...]]
    anonymous: tuple[AclEntry, ...]
    patterns: tuple[AclEntry, ...]

    @classmethod
    def parse(cls, text: str) -> AclRules:
        users: dict[str, list[AclEntry]] = {}
        anonymous: list[AclEntry] = []
        patterns: list[AclEntry] = []
        current: list[AclEntry] = anonymous
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword, _, rest = line.partition(" ")
            rest = rest.strip()
            if keyword == "user":
                if not rest:
                    raise BrokerConfigError(f"acl line {number}: 'user' needs a name")
                current = users.setdefault(rest, [])
                continue
            if keyword not in ("topic", "pattern"):
                raise BrokerConfigError(f"acl line {number}: unknown keyword {keyword!r}")
            word, _, topic_filter = rest.partition(" ")
            if word in _WORDS or word == _DENY:
                topic_filter = topic_filter.strip()
            else:
                word, topic_filter = "readwrite", rest
            if not topic_filter or not is_valid_topic_filter(topic_filter):
                raise BrokerConfigError(f"acl line {number}: invalid topic filter {topic_filter!r}")
            entry = AclEntry(topic_filter, _WORDS.get(word, Access.NONE), deny=word == _DENY)
            (patterns if keyword == "pattern" else current).append(entry)
        return cls(
            users={name: tuple(entries) for name, entries in users.items()},
            anonymous=tuple(anonymous),
            patterns=tuple(patterns),
        )

    def _entries(self, username: str | None, client_id: str) -> Iterable[AclEntry]:
        yield from self.users.get(username, ()) if username is not None else self.anonymous
        for entry in self.patterns:
            topic_filter = _substitute(entry.topic_filter, username, client_id)
            if topic_filter is not None:
                yield AclEntry(topic_filter, entry.access, entry.deny)

    def allows(self, username: str | None, client_id: str, topic: str, access: Access) -> bool:
        """Whether the client may ``access`` (READ or WRITE) the topic name ``topic``."""
        entries = tuple(self._entries(username, client_id))
        if any(e.deny and topic_matches(e.topic_filter, topic) for e in entries):
            return False
        return any(e.access & access and topic_matches(e.topic_filter, topic) for e in entries)
