"""The rules' clock across restarts: where :class:`~hub.clock.SteadyClock` got to, kept in a file.

A :class:`~hub.clock.SteadyClock` rides out a backward step of the wall clock while the hub
runs. Its rule state does not forget across a restart (the newest event time each rule applied
is stored), so neither may the clock: a hub restarted in the middle of absorbing a step, or
started after the clock went back while it was down, would otherwise start from the
stepped-back wall clock and find every device's next event "late". The file holds one number,
the latest time the clock gave, rewritten every :data:`EVERY_S` seconds while it moves and at
a clean stop. After a ``kill -9`` the floor is up to that many seconds old: events of those
seconds may still be taken as late after such a restart, never more.

Must not import: the rules, MQTT or the web layer (the composition root wires it).
"""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path

from hub.clock import SteadyClock
from hub.files import write_private

log = logging.getLogger(__name__)

#: The file beside the store, in the hub's data directory.
FILE_NAME = "rule-clock"
#: How often the floor is rewritten while the clock moves (seconds of the event loop's clock).
EVERY_S = 5.0


def read_floor(path: Path) -> float | None:
    """The floor a previous run left, or ``None`` (none yet, or unreadable: the wall clock rules)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("the rules' clock floor %s is unreadable (%s): starting from the wall clock", path, exc)
        return None
    try:
        value = float(text)
    except ValueError:
        log.warning(
            "the rules' clock floor %s holds %r, not a time: starting from the wall clock", path, text[:40]
        )
        return None
    return value if math.isfinite(value) and value > 0 else None


def on_step(seconds: float, absorbed: bool) -> None:
    """Log a backward step of the wall clock as the rules' clock sees it (once per step)."""
    if absorbed:
        log.warning(
            "the wall clock went back %.1f s: the rules' clock keeps going and absorbs the step "
            "(rule durations run up to twice as long until it has)",
            seconds,
        )
    else:
        log.critical(
            "the wall clock went back %.0f s, more than the rules' clock absorbs: it follows the "
            "wall clock, and events are taken as late until it reaches their newest time again",
            seconds,
        )


class ClockFloor:
    """Keeps ``clock``'s latest time in ``path`` (see the module docstring)."""

    def __init__(self, *, clock: SteadyClock, path: Path) -> None:
        self._clock = clock
        self._path = path
        self._written = 0.0
        #: Writes that failed (a full or read-only disk): logged on the 1st, 2nd, 4th, 8th …
        self.failures = 0

    def write(self, now: float | None = None) -> None:
        """Write ``now`` (default: the clock's time; read it on the event loop, the clock's owner)."""
        if now is None:
            now = self._clock.now()
        if now <= self._written:
            return
        try:
            write_private(self._path, f"{now:.6f}\n".encode("ascii"))
        except OSError as exc:
            self.failures += 1
            if self.failures & (self.failures - 1) == 0:
                log.warning(
                    "the rules' clock floor %s was not written (%s; %d so far)",
                    self._path,
                    exc,
                    self.failures,
                )
            return
        self._written = now

    async def run(self) -> None:
        """Rewrite the floor every :data:`EVERY_S` seconds (the named task ``linli-rule-clock``)."""
        while True:
            await asyncio.sleep(EVERY_S)
            # The clock is read here, on its owner's thread; only the file write goes to a thread.
            await asyncio.to_thread(self.write, self._clock.now())
