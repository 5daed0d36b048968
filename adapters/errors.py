"""The root of Linli's error hierarchy and the decoding errors.

``LinliError`` lives here, in the lowest layer, so that ``rules`` and ``hub`` can derive
their errors from it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.events import Event


class LinliError(Exception):
    """Base class of every error Linli raises on purpose."""


class DecodeError(LinliError):
    """A message could not be turned into events; ``reason`` is a stable, short code.

    ``reason`` is meant for counters and the quarantine list (e.g. ``malformed_json``),
    ``detail`` for people.

    ``salvaged``: the events the message did carry, decoded before (or beside) the part that is
    bad. An SOS press must not be lost to a bad neighbour (a ``tamper`` of the wrong type in
    the same report, a bad item in the same batch): the hub quarantines the message with the
    reason *and* handles these.
    """

    def __init__(
        self, reason: str, detail: str, *, topic: str = "", salvaged: tuple[Event, ...] = ()
    ) -> None:
        super().__init__(f"{reason}: {detail}" + (f" (topic {topic!r})" if topic else ""))
        self.reason = reason
        self.detail = detail
        self.topic = topic
        self.salvaged = salvaged

    def keeping(self, events: list[Event] | tuple[Event, ...]) -> DecodeError:
        """This error with ``events`` salvaged too (raised again where the decoder knows them)."""
        if not events:
            return self
        return DecodeError(self.reason, self.detail, topic=self.topic, salvaged=(*events, *self.salvaged))
