"""Worker replies over MQTT: the one definition of the reply topic, and applying a reply.

A person's app publishes actions on ``{prefix}/{community}/workers/{person}/replies``
(``docs/topics.md``); ``prefix`` is the configured ``mqtt.topic_prefix`` and may itself have
several levels (``site1/linli``). The topic is built, subscribed and parsed here only, so
the three cannot disagree.

A reply that cannot be applied (malformed, refused by the access table or the workflow)
leaves a quarantine record with its reason; it never raises into the MQTT callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from hub.cases.model import CaseAction, Channel
from hub.casework.access import Actor
from hub.casework.service import Casework
from hub.errors import HubError

log = logging.getLogger(__name__)

_WORKERS = "workers"
_REPLIES = "replies"


@dataclass(frozen=True, slots=True)
class ReplyTopics:
    """Reply topics under ``prefix`` (any number of levels, no wildcards)."""

    prefix: str

    def topic(self, community: str, person_id: str) -> str:
        return f"{self.prefix}/{community}/{_WORKERS}/{person_id}/{_REPLIES}"

    def subscription(self) -> str:
        return f"{self.prefix}/+/{_WORKERS}/+/{_REPLIES}"

    def parse(self, topic: str) -> tuple[str, str] | None:
        """``(community, person)`` of a reply topic, or ``None`` for any other topic."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head) :].split("/")
        if len(parts) != 4 or parts[1] != _WORKERS or parts[3] != _REPLIES or not parts[0] or not parts[2]:
            return None
        return parts[0], parts[2]


#: Where a reply that cannot be applied is recorded: (topic, reason, detail, payload).
OnBadReply = Callable[[str, str, str, bytes], None]


class Replies:
    """Applies worker replies to cases through :class:`Casework` (and so the access table)."""

    def __init__(self, *, topics: ReplyTopics, casework: Casework, on_bad_reply: OnBadReply) -> None:
        self.topics = topics
        self._casework = casework
        self._on_bad_reply = on_bad_reply
        #: Replies taken off reply topics (applied or quarantined).
        self.handled = 0

    def handle(self, topic: str, payload: bytes) -> bool:
        """Apply a reply; ``False`` if ``topic`` is not a reply topic (the sensor pipeline takes it)."""
        parsed = self.topics.parse(topic)
        if parsed is None:
            return False
        self.handled += 1
        _community, person = parsed
        try:
            body = orjson.loads(payload)
            case_id = str(body["case_id"])
            action = CaseAction(body["action"])
            note = str(body.get("note", ""))
            data = body.get("data") or {}
            if not isinstance(data, dict):
                raise TypeError("data must be an object")
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
            log.warning("bad reply from %s on %r: %s", person, topic, exc)
            self._on_bad_reply(topic, "bad_reply", f"{type(exc).__name__}: {exc}", payload)
            return True
        role = self._casework.role_of(person)
        if role is None:
            # The person's role decides what they may do; someone in no roster may do nothing.
            self._on_bad_reply(topic, "reply_refused", f"{person!r} is not in any roster", payload)
            return True
        try:
            self._casework.act(
                case_id, action, actor=Actor(person, role), channel=Channel.MQTT, note=note, data=data
            )
        except HubError as exc:
            log.warning("reply from %s refused: %s", person, exc)
            self._on_bad_reply(topic, "reply_refused", str(exc), payload)
        return True
