"""Every error the hub raises on purpose, in one tree rooted in :class:`LinliError`.

::

    LinliError                      (adapters.errors — the root, shared with adapters and rules)
    ├── DecodeError                 (adapters.errors) a message could not become events
    ├── ProfileError                (adapters.profiles) a device profile file is invalid
    ├── RuleError                   (rules.errors) a rule pack is invalid
    └── HubError
        ├── ConfigError             configuration invalid: names the key and the file or variable
        ├── RegistryError           community registry file invalid: names the file and the field
        ├── StoreError              the store cannot be opened or written
        │   ├── SchemaVersionError  the database was written by a newer Linli
        │   ├── NotStoredError      the rules decided, the store refused: carries how to resume
        │   ├── FencedError         a write from a node whose community lease (epoch) is gone
        │   └── StaleCaseError      a case changed under us (optimistic version check); retry
        ├── MqttError               MQTT URL invalid, connection refused or unreachable
        ├── MessageDeferred         a message queued behind an earlier one of its topic (not acked yet)
        ├── BrokerError             the embedded broker
        │   ├── BrokerStateError    used in the wrong lifecycle state
        │   ├── BrokerConfigError   a constructor argument out of range (also a ValueError)
        │   ├── MalformedPacketError       bytes that are no MQTT 3.1.1 packet
        │   ├── ProtocolViolationError     a packet that breaks a protocol rule [MQTT-4.8.0-1]
        │   └── UnsupportedProtocolError   CONNECT with a level the broker does not speak
        ├── CalendarError           the working-day calendar cannot answer
        ├── PolicyError             a case policy file is invalid
        ├── ChannelError            a notification channel request cannot be built
        ├── RequestError            an HTTP request the API refuses before any work
        │   ├── NotAuthenticatedError   no valid token or session (401)
        │   ├── TooManyAttemptsError    too many failed token checks from one address (429)
        │   ├── BadRequestError         a value the API cannot read (400)
        │   └── NotFoundError           nothing with that id the caller may see (404)
        └── CaseError
            ├── CaseNotFoundError   no case with that id
            ├── NotAllowedError     the access table refuses this actor the action
            └── InvalidTransition   the workflow refuses the action in this state
                └── RequirementNotMet   allowed in this state, but a note/approver is missing

Errors are raised where the cause is known and carry it as attributes (key, file, state,
action …) so callers map them to HTTP statuses or quarantine reasons without parsing text.

Must not import: any ``hub`` module (everything imports this one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum

from adapters.errors import LinliError

__all__ = [
    "BadRequestError",
    "BrokerConfigError",
    "BrokerError",
    "BrokerStateError",
    "CalendarError",
    "CaseError",
    "CaseNotFoundError",
    "ChannelError",
    "ConfigError",
    "FencedError",
    "HubError",
    "InvalidTransition",
    "LinliError",
    "MalformedPacketError",
    "MessageDeferred",
    "MqttError",
    "NotAllowedError",
    "NotAuthenticatedError",
    "NotFoundError",
    "NotStoredError",
    "PolicyError",
    "ProtocolViolationError",
    "RegistryError",
    "RequestError",
    "RequirementNotMet",
    "SchemaVersionError",
    "StaleCaseError",
    "StoreError",
    "TooManyAttemptsError",
    "UnsupportedProtocolError",
]


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


class SchemaVersionError(StoreError):
    """The database file was written by a newer Linli; opening it could lose what that version keeps."""

    def __init__(self, *, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"store {path} has schema version {found}, newer than this Linli supports ({supported}):"
            " upgrade Linli, or restore a backup taken by this version"
        )
        self.path = path
        self.found = found
        self.supported = supported


class NotStoredError(StoreError):
    """What the rules decided for a message could not be stored (disk full, database locked).

    The rule engine's state has already moved on (it saw the event), so handling the same
    message again could find it a duplicate and decide nothing — losing an SOS. ``resume``
    stores the decided signals and goes on with the message's remaining events instead;
    the retry queue calls it rather than handling the message again.
    """

    def __init__(self, *, resume: Callable[[], None], cause: BaseException) -> None:
        super().__init__(f"not stored, will resume: {type(cause).__name__}: {cause}")
        self.resume = resume
        self.cause = cause


class StaleCaseError(StoreError):
    """The case changed under us (optimistic version check failed); reload and retry."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"case {case_id!r} changed concurrently")
        self.case_id = case_id


class FencedError(StoreError):
    """A write on behalf of a community from a node that no longer holds its lease at that epoch."""

    def __init__(self, *, community: str, node_id: str, epoch: int, held: str) -> None:
        super().__init__(
            f"write for community {community} refused: {node_id} at epoch {epoch} no longer owns it"
            f" (held by {held})"
        )
        self.community = community
        self.node_id = node_id
        self.epoch = epoch


class MqttError(HubError):
    """The MQTT connection failed (bad URL, refused, unreachable)."""


class BrokerUnreachableError(MqttError):
    """No connection to the broker at all (down, not started yet, no route): waiting may help."""


class MessageDeferred(HubError):  # noqa: N818 - not a failure: the message waits its turn
    """Not handled *yet*: an earlier message of the same topic is still being retried.

    Raised by the hub's message handler so the MQTT client holds the PUBACK and hands the
    message to the retry queue, keeping each device's messages in order. Not a failure.
    """

    def __init__(self, topic: str) -> None:
        super().__init__(f"queued behind an earlier message on {topic!r}")
        self.topic = topic


class BrokerError(HubError):
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


class CalendarError(HubError):
    """The calendar cannot answer (invalid definition, or no working time ahead)."""


class PolicyError(HubError):
    """A policy file is invalid or names nothing that matches."""


class ChannelError(HubError):
    """A channel request cannot be built (bad URL, missing key …)."""


class RequestError(HubError):
    """An HTTP request refused before any work; ``error`` is the API's machine-readable code."""

    error = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticatedError(RequestError):
    error = "unauthorized"


class TooManyAttemptsError(RequestError):
    """An address failed too many token checks; it may try again in ``retry_after_s``."""

    error = "too_many_attempts"

    def __init__(self, *, retry_after_s: float) -> None:
        super().__init__(
            f"登录尝试过多，请 {retry_after_s:.0f} 秒后再试 / too many attempts, retry in {retry_after_s:.0f} s"
        )
        self.retry_after_s = retry_after_s


class BadRequestError(RequestError):
    error = "bad_request"


class NotFoundError(RequestError):
    error = "not_found"


class InvalidAssigneeError(BadRequestError):
    """A case is given to someone who is nobody, or nobody who may work where the case is."""

    error = "invalid_assignee"


class CaseError(HubError):
    """Base class of refusals to act on a case."""


class CaseNotFoundError(CaseError):
    def __init__(self, case_id: str) -> None:
        super().__init__(f"no case {case_id!r}")
        self.case_id = case_id


class NotAllowedError(CaseError):
    """The actor may not do this (not assigned, not in the grid, wrong role): the access table said no."""


class InvalidTransition(CaseError):  # noqa: N818 - the name the hub's API and docs use
    """An action refused in a state; names the state, the action and what is allowed.

    ``state``, ``action`` and ``allowed`` are :class:`hub.cases.model.CaseState` and
    :class:`~hub.cases.model.CaseAction` members (typed by their base here, so that this
    module imports nothing of the hub).
    """

    def __init__(
        self, *, state: StrEnum, action: StrEnum, allowed: Iterable[StrEnum], reason: str = ""
    ) -> None:
        self.state = state
        self.action = action
        self.allowed = tuple(allowed)
        self.reason = reason
        names = ", ".join(a.value for a in self.allowed) or "none (the case is finished)"
        why = reason or f"{action.value!r} is not allowed in state {state.value!r}"
        super().__init__(f"cannot {action.value} a case in state {state.value!r}: {why}; allowed: {names}")


class RequirementNotMet(InvalidTransition):
    """The action is allowed in this state but lacks what a rule requires (a note, an approver …)."""
