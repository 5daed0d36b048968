"""The root of Linli's error hierarchy and the decoding errors.

``LinliError`` lives here, in the lowest layer, so that ``rules`` and ``hub`` can derive
their errors from it without importing each other.
"""

from __future__ import annotations


class LinliError(Exception):
    """Base class of every error Linli raises on purpose."""


class DecodeError(LinliError):
    """A message could not be turned into events; ``reason`` is a stable, short code.

    ``reason`` is meant for counters and the quarantine list (e.g. ``malformed_json``),
    ``detail`` for people.
    """

    def __init__(self, reason: str, detail: str, *, topic: str = "") -> None:
        super().__init__(f"{reason}: {detail}" + (f" (topic {topic!r})" if topic else ""))
        self.reason = reason
        self.detail = detail
        self.topic = topic
