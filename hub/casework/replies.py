"""Worker replies over MQTT: the one reply-topic definition, the signing rule, applying a reply.

A person's app publishes actions on ``{prefix}/{community}/workers/{person}/replies``
(``docs/topics.md``); ``prefix`` is the configured ``mqtt.topic_prefix`` and may itself have
several levels (``site1/linli``). The topic is built, subscribed and parsed here only, so
the three cannot disagree.

**Who sent a reply is proven, not read off the topic.** Anyone who may publish on the
topic (a sensor credential on a broker without ACLs, a shared password) could otherwise
close an elder's SOS as a false alarm. Every reply carries ``ts``, ``nonce`` and ``sig`` =
HMAC-SHA256 with the person's reply key (:mod:`hub.casework.reply_keys`) over
:func:`canonical_reply`. The hub refuses, and quarantines without applying:

* a missing or wrong signature, or a person with no key (``reply_unauthenticated``);
* a ``ts`` further than the window from the hub's clock (``reply_unauthenticated``);
* a nonce already used by that person (``reply_replayed``; nonces are kept in the store
  while their timestamp is inside the window, so a restart does not reopen replays);
* a retained reply (``reply_retained``): MQTT delivers a retained message again on every
  (re)subscribe [MQTT-3.3.1-6], so it is a replay by construction.

A reply that is authentic but cannot be applied (malformed, refused by the access table or
the workflow) is quarantined too (``bad_reply``, ``reply_refused``). Nothing here raises into
the MQTT callback except a store failure (so the broker redelivers).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from hub.cases.model import CaseAction, Channel
from hub.casework.access import Actor
from hub.casework.reply_keys import ReplyKeys
from hub.casework.service import Casework
from hub.clock import Clock
from hub.errors import HubError
from hub.mqtt.roundtrip import is_probe
from hub.mqtt.topics import WORKERS
from hub.storage.nonces import ReplyNonces

log = logging.getLogger(__name__)

_WORKERS = WORKERS
_REPLIES = "replies"

#: First line of the signed text: a new signing rule gets a new name, never a changed meaning.
SIGNATURE_SCHEME = "linli-reply-v1"
#: Default acceptance window around the hub's clock (seconds); ``replies.window_s`` sets it.
DEFAULT_WINDOW_S = 300.0
#: Case ids and nonces: one line, no separators, bounded (they are part of the signed text).
_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SIG = re.compile(r"^[0-9a-f]{64}$")


class ReplyOutcome(StrEnum):
    """What became of a reply (the quarantine reason for all but ``applied``)."""

    APPLIED = "applied"
    BAD_REPLY = "bad_reply"
    REFUSED = "reply_refused"
    UNAUTHENTICATED = "reply_unauthenticated"
    REPLAYED = "reply_replayed"
    RETAINED = "reply_retained"


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
        # Every sensor message is asked this first: no new string unless the prefix matches.
        cut = len(self.prefix)
        if not (topic.startswith(self.prefix) and topic.startswith("/", cut)):
            return None
        parts = topic[cut + 1 :].split("/")
        if len(parts) != 4 or parts[1] != _WORKERS or parts[3] != _REPLIES or not parts[0] or not parts[2]:
            return None
        return parts[0], parts[2]


def content_digest(note: str, data: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``note`` + ``"\\n"`` + ``data`` as JSON with sorted keys, no whitespace, UTF-8."""
    body = note.encode("utf-8") + b"\n" + orjson.dumps(dict(data), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def canonical_reply(
    *, case_id: str, action: str, ts: int, nonce: str, person: str, note: str, data: Mapping[str, Any]
) -> bytes:
    """The signed text: seven lines joined by ``"\\n"`` (no trailing newline), UTF-8."""
    lines = (SIGNATURE_SCHEME, case_id, action, str(ts), nonce, person, content_digest(note, data))
    return "\n".join(lines).encode("utf-8")


def sign_reply(
    key: bytes,
    *,
    case_id: str,
    action: str,
    ts: int,
    nonce: str,
    person: str,
    note: str = "",
    data: Mapping[str, Any] | None = None,
) -> str:
    """``sig`` of a reply: HMAC-SHA256 (hex, lower case) of :func:`canonical_reply` with ``key``."""
    text = canonical_reply(
        case_id=case_id, action=action, ts=ts, nonce=nonce, person=person, note=note, data=data or {}
    )
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def signed_reply(
    key: bytes,
    *,
    person: str,
    case_id: str,
    action: str,
    ts: float,
    note: str = "",
    data: Mapping[str, Any] | None = None,
    nonce: str | None = None,
) -> bytes:
    """A complete reply payload as a person's app sends it (tools and the scenario runner)."""
    stamp = int(ts)
    nonce = nonce or secrets.token_urlsafe(16)
    body: dict[str, Any] = {"case_id": case_id, "action": action, "ts": stamp, "nonce": nonce}
    if note:
        body["note"] = note
    if data:
        body["data"] = dict(data)
    body["sig"] = sign_reply(
        key, case_id=case_id, action=action, ts=stamp, nonce=nonce, person=person, note=note, data=data
    )
    return orjson.dumps(body)


#: Where a reply that cannot be applied is recorded: (topic, reason, detail, payload).
OnBadReply = Callable[[str, str, str, bytes], None]


@dataclass(frozen=True, slots=True)
class _Reply:
    case_id: str
    action: str
    ts: int
    nonce: str
    sig: str
    note: str
    data: dict[str, Any]


class _Refused(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, outcome: ReplyOutcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def _parse(payload: bytes) -> _Reply:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise _Refused(ReplyOutcome.BAD_REPLY, f"JSONDecodeError: {exc}") from None
    if not isinstance(body, dict):
        raise _Refused(ReplyOutcome.BAD_REPLY, "a reply is a JSON object")
    case_id, action = body.get("case_id"), body.get("action")
    if not isinstance(case_id, str) or not _TOKEN.match(case_id):
        raise _Refused(ReplyOutcome.BAD_REPLY, "case_id must be a string of 1-64 [A-Za-z0-9_.:-]")
    if not isinstance(action, str) or not _TOKEN.match(action):
        raise _Refused(ReplyOutcome.BAD_REPLY, "action must be a case action name")
    note, data = body.get("note", ""), body.get("data") or {}
    if not isinstance(note, str):
        raise _Refused(ReplyOutcome.BAD_REPLY, "note must be a string")
    if not isinstance(data, dict):
        raise _Refused(ReplyOutcome.BAD_REPLY, "data must be an object")
    ts, nonce, sig = body.get("ts"), body.get("nonce"), body.get("sig")
    if sig is None or ts is None or nonce is None:
        raise _Refused(ReplyOutcome.UNAUTHENTICATED, "unsigned reply: ts, nonce and sig are required")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise _Refused(ReplyOutcome.UNAUTHENTICATED, "ts must be an integer (Unix seconds)")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise _Refused(ReplyOutcome.UNAUTHENTICATED, "nonce must be 16-64 characters of [A-Za-z0-9_-]")
    if not isinstance(sig, str) or not _SIG.match(sig):
        raise _Refused(ReplyOutcome.UNAUTHENTICATED, "sig must be 64 lower-case hex digits")
    return _Reply(case_id, action, ts, nonce, sig, note, data)


class Replies:
    """Authenticates worker replies, then applies them through :class:`Casework` (and so the access table)."""

    def __init__(
        self,
        *,
        topics: ReplyTopics,
        casework: Casework,
        on_bad_reply: OnBadReply,
        keys: ReplyKeys,
        nonces: ReplyNonces,
        clock: Clock,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        self.topics = topics
        self._casework = casework
        self._on_bad_reply = on_bad_reply
        self._keys = keys
        self._nonces = nonces
        self._clock = clock
        self._window_s = window_s
        #: Replies taken off reply topics (applied or quarantined), doctor's probes included.
        self.handled = 0
        #: ``linli doctor``'s probes among them (neither applied nor quarantined).
        self.doctor_probes = 0

    def handle(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Apply a reply; ``False`` if ``topic`` is not a reply topic (the sensor pipeline takes it)."""
        parsed = self.topics.parse(topic)
        if parsed is None:
            return False
        self.handled += 1
        _community, person = parsed
        if is_probe(payload):
            # `linli doctor --worker-mqtt` proving this person's reply topic reaches the hub: no
            # reply of theirs, and nothing to quarantine (hub.mqtt.roundtrip).
            self.doctor_probes += 1
            log.debug("linli doctor's round-trip probe on %r received", topic[:200])
            return True
        try:
            self._handle(person, payload, retain)
        except _Refused as refused:
            log.warning("reply on %r not applied: %s: %s", topic[:200], refused.outcome.value, refused.detail)
            self._on_bad_reply(topic, refused.outcome.value, refused.detail, payload)
        return True

    def _handle(self, person: str, payload: bytes, retain: bool) -> None:
        if retain:
            raise _Refused(ReplyOutcome.RETAINED, "a retained reply is replayed on every subscribe; ignored")
        reply = _parse(payload)
        self._authenticate(person, reply)
        if self._nonces.seen(person, reply.nonce):
            raise _Refused(ReplyOutcome.REPLAYED, f"nonce {reply.nonce!r} of {person!r} was used already")
        try:
            self._apply(person, reply)
        except _Refused:
            # Authentic but refused by the workflow: the nonce is spent all the same.
            self._spend(person, reply)
            raise
        # A store failure inside _apply propagates without spending the nonce, so the
        # broker's redelivery of the same message is applied, not refused as a replay.
        self._spend(person, reply)

    def _spend(self, person: str, reply: _Reply) -> None:
        prune_before = self._clock.now() - self._window_s
        self._nonces.remember(person, reply.nonce, ts=reply.ts, prune_before=prune_before)

    def _authenticate(self, person: str, reply: _Reply) -> None:
        key = self._keys.key_for(person)
        if key is None:
            raise _Refused(ReplyOutcome.UNAUTHENTICATED, f"no reply key issued for {person!r}")
        expected = sign_reply(
            key,
            case_id=reply.case_id,
            action=reply.action,
            ts=reply.ts,
            nonce=reply.nonce,
            person=person,
            note=reply.note,
            data=reply.data,
        )
        if not hmac.compare_digest(expected, reply.sig):
            raise _Refused(ReplyOutcome.UNAUTHENTICATED, f"signature does not verify with {person!r}'s key")
        skew = reply.ts - self._clock.now()
        if abs(skew) > self._window_s:
            raise _Refused(
                ReplyOutcome.UNAUTHENTICATED,
                f"ts is {skew:+.0f} s from the hub's clock (window ±{self._window_s:.0f} s)",
            )

    def _apply(self, person: str, reply: _Reply) -> None:
        try:
            action = CaseAction(reply.action)
        except ValueError:
            raise _Refused(ReplyOutcome.BAD_REPLY, f"unknown action {reply.action!r}") from None
        role = self._casework.role_of(person)
        if role is None:
            # The person's role decides what they may do; someone in no roster may do nothing.
            raise _Refused(ReplyOutcome.REFUSED, f"{person!r} is not in any roster")
        try:
            self._casework.act(
                reply.case_id,
                action,
                actor=Actor(person, role),
                channel=Channel.MQTT,
                note=reply.note,
                data=reply.data,
            )
        except HubError as exc:
            raise _Refused(ReplyOutcome.REFUSED, str(exc)) from None
