"""Console sessions: a random id in an HttpOnly cookie, the identity kept on the server.

Before issue 11 the cookie *was* the permanent API token (set from ``/login?token=…``, so the
token also sat in browser history): no expiry, no logout. Now ``POST /login`` checks the
token once and the browser only ever holds a random session id that:

* expires after ``idle_s`` without a request and ``max_s`` after login, whatever happens;
* ends on ``POST /logout`` (and for everybody when the hub restarts: sessions live in
  memory on purpose — no table, nothing to steal from a backup; people log in again);
* carries a CSRF token bound to it, which the console sends as ``X-CSRF-Token`` on every
  state-changing request (a page on another port of the same host — same *site* — could
  otherwise post with the cookie; SameSite=Strict does not stop that).

Must not import: ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from hub.config import ApiToken

COOKIE = "linli_session"
CSRF_HEADER = "X-CSRF-Token"
#: Sessions held at once; the oldest go first beyond this (a login flood cannot grow memory).
MAX_SESSIONS = 10_000
#: Sessions one token holds at once; its own oldest go first beyond this. A command-centre token
#: shared by a room of desks stays far below it; a login loop with one token only ever logs
#: itself out, never somebody else (with the global cap alone, 10 000 logins with a viewer
#: token pushed the command centre out of its console).
MAX_SESSIONS_PER_TOKEN = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    id: str
    csrf: str
    token: ApiToken
    created: float
    last_seen: float


class Sessions:
    """id → session, in memory, with idle and absolute expiry."""

    def __init__(
        self,
        *,
        idle_s: float,
        max_s: float,
        now: Callable[[], float] = time.monotonic,
        limit: int = MAX_SESSIONS,
        per_token: int = MAX_SESSIONS_PER_TOKEN,
    ) -> None:
        self._idle_s = idle_s
        self._max_s = max_s
        self._now = now
        self._limit = limit
        self._per_token = per_token
        self._sessions: dict[str, Session] = {}
        #: token (its SHA-256) → its session ids, oldest first (a dict keeps insertion order).
        self._by_token: dict[str, dict[str, None]] = {}

    def open(self, token: ApiToken) -> Session:
        """A new session for ``token`` (a fresh id: a login never reuses an old one).

        Room is made from the token's own sessions first; when the hub as a whole is full,
        from the token holding the most (so one credential cannot log the others out).
        """
        self._expire()
        own = self._by_token.get(token.sha256, {})
        while len(own) >= self._per_token:
            self._drop(next(iter(own)))
        while len(self._sessions) >= self._limit:
            fullest = max(self._by_token, key=lambda token: len(self._by_token[token]))
            self._drop(next(iter(self._by_token[fullest])))
        now = self._now()
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            token=token,
            created=now,
            last_seen=now,
        )
        self._sessions[session.id] = session
        self._by_token.setdefault(token.sha256, {})[session.id] = None
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session with this id, touched; ``None`` if unknown or expired (then forgotten)."""
        session = self._live(session_id)
        if session is None:
            return None
        touched = replace(session, last_seen=self._now())
        self._sessions[session_id] = touched
        return touched

    def alive(self, session_id: str) -> bool:
        """Whether the session is still live, without touching it: an open event stream asks
        before every write, and must neither outlive a logout or expiry nor keep an unattended
        console's session from expiring."""
        return self._live(session_id) is not None

    def _live(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._now()
        if now - session.last_seen > self._idle_s or now - session.created > self._max_s:
            self._drop(session_id)
            return None
        return session

    def close(self, session_id: str) -> None:
        self._drop(session_id)

    def _drop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        own = self._by_token.get(session.token.sha256)
        if own is not None:
            own.pop(session_id, None)
            if not own:
                del self._by_token[session.token.sha256]

    def _expire(self) -> None:
        now = self._now()
        for key, s in list(self._sessions.items()):
            if now - s.last_seen > self._idle_s or now - s.created > self._max_s:
                self._drop(key)

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())
