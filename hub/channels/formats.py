"""Request bodies and signatures: generic JSON webhook, DingTalk custom robot, WeCom group robot.

Pure: each function returns a :class:`PreparedRequest` (URL, headers, body bytes) that
:func:`hub.channels.webhook.send` POSTs as is. Timestamps are parameters, never read here.

**DingTalk custom robot (自定义机器人), 加签 security setting.** As documented on
open.dingtalk.com ("自定义机器人接入" / custom-robot-access): the string to sign is
``timestamp + "\\n" + secret`` with ``timestamp`` the current time in **milliseconds**
(it must lie within one hour of DingTalk's clock); HMAC-SHA256 keyed with the secret (the
``SEC…`` string), UTF-8 throughout; Base64 of the digest; then URL-encoded and appended as
``&timestamp=…&sign=…`` to the webhook URL (which already carries ``access_token``).
Errors come back as HTTP 200 with a non-zero ``errcode`` in the JSON body.

**WeCom group robot (企业微信群机器人).** The official page (developer.work.weixin.qq.com,
"群机器人配置说明", doc 91770) defines **no signature**: the ``key`` in the webhook URL is the
only credential ("一定要保护好机器人的webhook地址"), so keep the URL in the secrets file. The
page gives ``text`` content at most 2048 bytes of UTF-8; for ``markdown`` we use the widely
cited 4096 bytes (not seen in the excerpt of the page we checked); ``<@userid>`` mentions
work in both, ``mentioned_mobile_list`` in ``text``. Content is truncated on a character
boundary to fit.

**Generic webhook.** JSON body; when a secret is configured, ``X-Linli-Timestamp`` (Unix
seconds) and ``X-Linli-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}." + body>`` so
the receiver can check origin and freshness (the scheme popularised by Stripe/Slack).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus, urlsplit

from hub.errors import ChannelError

WECOM_TEXT_MAX_BYTES = 2048
WECOM_MARKDOWN_MAX_BYTES = 4096
JSON_HEADERS: tuple[tuple[str, str], ...] = (("Content-Type", "application/json; charset=utf-8"),)


class Flavor(StrEnum):
    """How a response is read: plain HTTP status, or a robot API's ``errcode`` in the body."""

    GENERIC = "generic"
    DINGTALK = "dingtalk"
    WECOM = "wecom"


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedRequest:
    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    flavor: Flavor = Flavor.GENERIC
    method: str = "POST"


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # Not the URL itself: it may hold a robot key or a token, and this text is logged and
        # stored as the notification's error (found in review).
        raise ChannelError(f"not an http(s) URL (scheme {parts.scheme[:20]!r}, {len(url)} characters)")


# -- generic ----------------------------------------------------------------------------


def generic_signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_generic(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(generic_signature(secret, timestamp, body), signature)


def generic_webhook(
    url: str, payload: Mapping[str, Any], *, secret: str | None = None, timestamp: int | None = None
) -> PreparedRequest:
    _check_url(url)
    body = _json(payload)
    headers = JSON_HEADERS
    if secret:
        if timestamp is None:
            raise ChannelError("a signed webhook needs the timestamp")
        headers = (
            *headers,
            ("X-Linli-Timestamp", str(timestamp)),
            ("X-Linli-Signature", generic_signature(secret, timestamp, body)),
        )
    return PreparedRequest(url=url, body=body, headers=headers)


# -- DingTalk ---------------------------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """Base64 of HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\\n{secret}"), not yet URL-encoded."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def dingtalk_url(webhook_url: str, *, secret: str | None, timestamp_ms: int | None) -> str:
    """The webhook URL with ``timestamp`` and URL-encoded ``sign`` appended (unchanged without secret)."""
    _check_url(webhook_url)
    if "access_token=" not in webhook_url:
        raise ChannelError("a DingTalk robot URL carries access_token=…")
    if not secret:
        return webhook_url
    if timestamp_ms is None:
        raise ChannelError("a signed DingTalk request needs timestamp_ms")
    sign = quote_plus(dingtalk_sign(secret, timestamp_ms))
    return f"{webhook_url}&timestamp={timestamp_ms}&sign={sign}"


def dingtalk_markdown(
    webhook_url: str,
    *,
    title: str,
    text: str,
    secret: str | None = None,
    timestamp_ms: int | None = None,
    at_mobiles: Sequence[str] = (),
    at_all: bool = False,
) -> PreparedRequest:
    """A ``msgtype: markdown`` message; mentioned mobiles are also written into the text,
    which DingTalk needs for the @ to show."""
    mentions = " ".join(f"@{m}" for m in at_mobiles if f"@{m}" not in text)
    body = {
        "msgtype": "markdown",
        "markdown": {"title": title, "text": f"{text}\n\n{mentions}" if mentions else text},
        "at": {"atMobiles": list(at_mobiles), "isAtAll": at_all},
    }
    return PreparedRequest(
        url=dingtalk_url(webhook_url, secret=secret, timestamp_ms=timestamp_ms),
        body=_json(body),
        flavor=Flavor.DINGTALK,
    )


# -- WeCom ------------------------------------------------------------------------------


def truncate_utf8(text: str, max_bytes: int, *, marker: str = "…") -> str:
    """``text`` cut on a character boundary so its UTF-8 form fits ``max_bytes``."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    room = max_bytes - len(marker.encode("utf-8"))
    return raw[:room].decode("utf-8", errors="ignore") + marker


def wecom_url(key_or_url: str) -> str:
    if key_or_url.startswith(("http://", "https://")):
        _check_url(key_or_url)
        if "key=" not in key_or_url:
            raise ChannelError("a WeCom robot URL carries key=…")
        return key_or_url
    if not key_or_url:
        raise ChannelError("the WeCom robot key is empty")
    return f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={quote_plus(key_or_url)}"


def wecom_markdown(key_or_url: str, *, content: str) -> PreparedRequest:
    body = {"msgtype": "markdown", "markdown": {"content": truncate_utf8(content, WECOM_MARKDOWN_MAX_BYTES)}}
    return PreparedRequest(url=wecom_url(key_or_url), body=_json(body), flavor=Flavor.WECOM)


def wecom_text(
    key_or_url: str,
    *,
    content: str,
    mentioned_mobiles: Sequence[str] = (),
    mentioned_users: Sequence[str] = (),
) -> PreparedRequest:
    text: dict[str, Any] = {"content": truncate_utf8(content, WECOM_TEXT_MAX_BYTES)}
    if mentioned_users:
        text["mentioned_list"] = list(mentioned_users)
    if mentioned_mobiles:
        text["mentioned_mobile_list"] = list(mentioned_mobiles)
    return PreparedRequest(
        url=wecom_url(key_or_url), body=_json({"msgtype": "text", "text": text}), flavor=Flavor.WECOM
    )
