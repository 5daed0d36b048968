"""POST one prepared request and classify the outcome; the hub's dispatcher decides on retries.

Outcomes:

* ``ok`` — 2xx, and for DingTalk/WeCom robots also ``errcode == 0`` in the JSON body (both
  answer errors with HTTP 200 and a non-zero ``errcode``);
* ``retryable`` — connection errors, timeouts, HTTP 408/425/429/5xx, robot rate limits
  (DingTalk 130101 "send too fast", WeCom 45009 "api freq out of limit"), WeCom ``-1``
  (system busy), and a 2xx robot answer that is not the expected JSON (a proxy page);
* ``permanent`` — any other status (redirects are not followed: a moved webhook is a
  configuration error) or robot ``errcode`` (bad token, bad signature, keyword mismatch).

The body excerpt is kept short (it may be logged and stored on the notification row).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from yarl import URL

from hub.channels.formats import Flavor, PreparedRequest

if TYPE_CHECKING:
    import aiohttp

EXCERPT_CHARS = 300
RETRYABLE_STATUS = frozenset({408, 425, 429})
RETRYABLE_ERRCODES: dict[Flavor, frozenset[int]] = {
    Flavor.DINGTALK: frozenset({130101}),
    Flavor.WECOM: frozenset({-1, 45009}),
}


class OutcomeKind(StrEnum):
    OK = "ok"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    kind: OutcomeKind
    status: int | None = None
    body_excerpt: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.OK


def classify(flavor: Flavor, status: int, body: str) -> Outcome:
    """Pure classification of an HTTP answer (see the module docstring)."""
    excerpt = body[:EXCERPT_CHARS]
    if not 200 <= status < 300:
        retry = status in RETRYABLE_STATUS or status >= 500
        return Outcome(
            kind=OutcomeKind.RETRYABLE if retry else OutcomeKind.PERMANENT,
            status=status,
            body_excerpt=excerpt,
            error=f"HTTP {status}",
        )
    if flavor is Flavor.GENERIC:
        return Outcome(kind=OutcomeKind.OK, status=status, body_excerpt=excerpt)
    try:
        doc = json.loads(body)
        errcode = int(doc["errcode"])
    except (ValueError, KeyError, TypeError):
        return Outcome(
            kind=OutcomeKind.RETRYABLE,
            status=status,
            body_excerpt=excerpt,
            error=f"{flavor.value}: answer without errcode",
        )
    if errcode == 0:
        return Outcome(kind=OutcomeKind.OK, status=status, body_excerpt=excerpt)
    kind = OutcomeKind.RETRYABLE if errcode in RETRYABLE_ERRCODES[flavor] else OutcomeKind.PERMANENT
    message = doc.get("errmsg", "") if isinstance(doc, dict) else ""
    return Outcome(
        kind=kind, status=status, body_excerpt=excerpt, error=f"{flavor.value} errcode {errcode}: {message}"
    )


async def send(
    session: aiohttp.ClientSession, request: PreparedRequest, *, timeout_s: float = 10.0
) -> Outcome:
    """POST ``request`` once and classify the answer. Never raises for network trouble."""
    import aiohttp  # noqa: PLC0415 (unused by many hubs: 0.25 s of start-up)

    try:
        async with session.request(
            request.method,
            # The URL is sent exactly as prepared: a DingTalk sign is already percent-encoded.
            URL(request.url, encoded=True),
            data=request.body,
            headers=dict(request.headers),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            raw = await response.content.read(EXCERPT_CHARS * 8)
            body = raw.decode("utf-8", errors="replace")
            return classify(request.flavor, response.status, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(
            kind=OutcomeKind.RETRYABLE, error=without_secrets(f"{type(exc).__name__}: {exc}", request.url)
        )


#: A URL's query (and fragment): where WeCom's ``key``, DingTalk's ``access_token`` and ``sign``
#: travel.
#: A URL's user information (``https://user:password@host``: aiohttp sends it as Basic auth).
_URL_USER = re.compile(r"(https?://)[^/@\s'\"]*@")
_URL_QUERY = re.compile(r"(https?://[^\s'\"?#]*)[?#][^\s'\"]*")


def without_secrets(text: str, url: str) -> str:
    """``text`` (an error's message) with the request URL's query and user information taken out.

    aiohttp's errors end with ``url='…'``, the whole request URL: found in review, a robot key
    kept in ``channel_secrets`` reached the log, the notifications table and the console that
    way. The path stays (it names the service); the query goes, here and in any URL quoted.
    """
    base, _, _ = url.partition("?")
    text = text.replace(url, f"{base}?…") if "?" in url else text
    return _URL_QUERY.sub(r"\1?…", _URL_USER.sub(r"\1…@", text))
