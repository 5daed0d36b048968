"""The state port: where rules keep their memory between events.

Rules never hold state in module or instance globals that a restart would lose silently;
they read and write it through this port. The hub supplies a persistent implementation;
:class:`MemoryState` serves tests and tools.
"""

from __future__ import annotations

from typing import Protocol


class StatePort(Protocol):
    """Key/value timestamps per (rule, subject)."""

    def get(self, rule_id: str, subject: str) -> float | None: ...

    def put(self, rule_id: str, subject: str, value: float) -> None: ...


class MemoryState:
    """A process-local :class:`StatePort`."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], float] = {}

    def get(self, rule_id: str, subject: str) -> float | None:
        return self._values.get((rule_id, subject))

    def put(self, rule_id: str, subject: str, value: float) -> None:
        self._values[(rule_id, subject)] = value
