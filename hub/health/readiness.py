"""Readiness: is every part an SOS press depends on working right now? Each check names what is wrong.

Liveness (``/healthz``) only says the process answers. Readiness (``/readyz``) is false while
anything would delay or lose a press: the MQTT sessions down or not subscribed, the store not
writable (messages held for retry, the write lock unavailable, the disk nearly full), a loop
that stopped beating (casework, dispatch, rule timers), the time-series spool nearly full.
The body names every failing check; with a token that may read, every check's reason and the
warnings too (:meth:`Readiness.as_json`), since those name files and alert ids.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.errors import StoreError


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]
    #: What an operator must act on that does not stop the hub (e.g. next year's holidays unknown).
    warnings: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_json(self, *, details: bool = True) -> dict[str, Any]:
        """The body of ``/readyz``. Without ``details`` only the verdict and the failing checks'
        names: what a probe (load balancer, container runtime) acts on. The reasons and the
        warnings name the data directory's files, alert and device ids and the broker's
        address, so they are for a caller the hub knows (any token that may read)."""
        body: dict[str, Any] = {
            "status": "ready" if self.ready else "not_ready",
            "failing": [c.name for c in self.checks if not c.ok],
        }
        if details:
            body["checks"] = {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}
            body["warnings"] = list(self.warnings)
        return body


Probe = Callable[[], Check]


def flag(name: str, ok: Callable[[], bool], *, wrong: str) -> Probe:
    """A check from a boolean: ``wrong`` says what it means when false."""

    def probe() -> Check:
        good = ok()
        return Check(name, good, "" if good else wrong)

    return probe


def beating(
    name: str, *, last: Callable[[], float | None], now: Callable[[], float], period_s: float
) -> Probe:
    """A loop beats: its last round started within ``period_s`` (on the hub's clock)."""

    def probe() -> Check:
        seen = last()
        if seen is None:
            return Check(name, False, "has not run yet")
        late = now() - seen
        if late > period_s:
            return Check(name, False, f"last round {late:.0f} s ago (period {period_s:.0f} s)")
        return Check(name, True)

    return probe


def store_writable(
    *, writable: Callable[[], None], path: Path, held: Callable[[], int], min_free_bytes: int
) -> Probe:
    """The store takes writes: nothing held for retry, the write lock free, room on the disk.

    ``writable`` raises (a :class:`~hub.errors.StoreError`) when the store would refuse a write
    now: SQLite's lock held by another process, PostgreSQL unreachable or a read-only standby.
    ``path`` is a file on the data disk (the SQLite store lives there; time series and
    backups do with any engine).
    """

    def probe() -> Check:
        waiting = held()
        if waiting:
            # Not asking the store again: the retries do, and a server that does not answer would
            # hold this probe (the event loop) for the watchdog's limit (found in review).
            return Check("store", False, f"{waiting} message(s) held: the store refused them; retrying")
        why = cause()
        return Check("store", why is None, why or "")

    def cause() -> str | None:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError as exc:
            return f"cannot stat {path.parent}: {exc}"
        if free < min_free_bytes:
            return f"{free // 1024} KiB free on the data disk (< {min_free_bytes // 1024} KiB)"
        try:
            writable()
        except StoreError as exc:
            return str(exc)
        return None

    return probe


def readiness(*, probes: Sequence[Probe], warnings: Sequence[str] = ()) -> Readiness:
    checks = []
    for probe in probes:
        try:
            checks.append(probe())
        except Exception as exc:  # a broken probe is a failing check, never a 500
            checks.append(Check(getattr(probe, "__name__", "probe"), False, f"{type(exc).__name__}: {exc}"))
    return Readiness(tuple(checks), tuple(warnings))
