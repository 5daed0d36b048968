"""Webhook channels at send time: DingTalk and WeCom robots and generic JSON webhooks.

The outbox stores *what* to say (a case notice, the endpoint's kind, address and the name of
its secret), never the secret itself; the request is rendered and signed only when it is
sent, so a DingTalk signature's timestamp is fresh on every retry (DingTalk refuses one older
than an hour). Secrets come from the hub's configuration (``channel_secrets``), which may be
filled from ``LINLI_CHANNEL_SECRETS__<NAME>`` variables; they are never logged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import SecretStr

from hub.channels.formats import PreparedRequest, dingtalk_markdown, generic_webhook, wecom_markdown
from hub.channels.messages import CaseNotice, Lang, NoticeKind, render
from hub.channels.preferences import Endpoint, EndpointKind
from hub.channels.webhook import Outcome, OutcomeKind, send
from hub.errors import ChannelError

if TYPE_CHECKING:
    import aiohttp

#: Outbox channels handled here (MQTT goes through the hub's own connection).
WEBHOOK_CHANNELS = frozenset(
    {EndpointKind.DINGTALK.value, EndpointKind.WECOM.value, EndpointKind.WEBHOOK.value}
)


def outbox_entry(endpoint: Endpoint, notice: CaseNotice) -> tuple[str, str, bytes]:
    """(channel, address, payload) for the outbox: everything but the secret."""
    payload = {
        "notice": notice.to_json(),
        "lang": endpoint.lang.value,
        "secret_ref": endpoint.secret_ref,
        "mention_mobiles": list(endpoint.mention_mobiles),
    }
    return endpoint.kind.value, endpoint.address, orjson.dumps(payload)


def _notice(doc: Mapping[str, Any]) -> CaseNotice:
    title = doc.get("title") or {}
    return CaseNotice(
        case_id=str(doc["case_id"]),
        kind=NoticeKind(doc["kind"]),
        category=str(doc["category"]),
        severity=str(doc["severity"]),
        title_zh=str(title.get("zh", "")),
        title_en=str(title.get("en", "")),
        state=str(doc["state"]),
        filed_at=float(doc["filed_at"]),
        grid=doc.get("grid"),
        address=str(doc.get("address", "")),
        due_at=doc.get("due_at"),
        stage=str(doc.get("stage", "")),
        link=str(doc.get("link", "")),
    )


class WebhookSender:
    def __init__(self, *, secrets: Mapping[str, SecretStr], zone: ZoneInfo, timeout_s: float = 10.0) -> None:
        self._secrets = secrets
        self._zone = zone
        self._timeout = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def prepare(
        self, channel: str, address: str, payload: bytes, *, now_ms: int | None = None
    ) -> PreparedRequest:
        doc = orjson.loads(payload)
        notice = _notice(doc["notice"])
        rendered = render(notice, zone=self._zone, lang=Lang(doc.get("lang", "zh")))
        ref = str(doc.get("secret_ref") or "")
        secret: str | None = None
        if ref:
            if ref not in self._secrets:
                raise ChannelError(f"no channel secret named {ref!r} in the configuration")
            secret = self._secrets[ref].get_secret_value()
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        if channel == EndpointKind.DINGTALK:
            return dingtalk_markdown(
                address,
                title=rendered.title,
                text=rendered.markdown,
                secret=secret,
                timestamp_ms=now_ms,
                at_mobiles=doc.get("mention_mobiles") or (),
            )
        if channel == EndpointKind.WECOM:
            # The robot key is the credential: kept in the secrets, or the address is the full URL.
            return wecom_markdown(secret or address, content=rendered.markdown)
        return generic_webhook(
            address, {**notice.to_json(), "text": rendered.text}, secret=secret, timestamp=now_ms // 1000
        )

    async def deliver(self, channel: str, address: str, payload: bytes) -> Outcome:
        try:
            request = self.prepare(channel, address, payload)
        except (ChannelError, KeyError, ValueError) as exc:
            # A notification that can never be rendered (bad address, missing secret) is not retried.
            return Outcome(kind=OutcomeKind.PERMANENT, error=f"cannot prepare: {exc}")
        if self._session is None:
            import aiohttp  # noqa: PLC0415 (unused by many hubs: 0.25 s of start-up)

            self._session = aiohttp.ClientSession()
        return await send(self._session, request, timeout_s=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
