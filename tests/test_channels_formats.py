"""Channel formats: DingTalk signing (fixed vectors), WeCom bodies and limits, generic webhook
signature, message texts (zh first, en available) and channel preferences."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from hub.channels.formats import (
    WECOM_TEXT_MAX_BYTES,
    Flavor,
    dingtalk_markdown,
    dingtalk_sign,
    generic_webhook,
    truncate_utf8,
    verify_generic,
    wecom_markdown,
    wecom_text,
)
from hub.channels.messages import CaseNotice, Lang, NoticeKind, render
from hub.channels.preferences import EndpointKind, Preferences
from hub.errors import ChannelError

SH = ZoneInfo("Asia/Shanghai")
DING = "https://oapi.dingtalk.com/robot/send?access_token=abc123"

# Vectors computed outside Python, with the documented steps (string to sign
# "timestamp\nsecret", HMAC-SHA256 keyed with the secret, Base64):
#   printf '1577262236757\nthis is secret' | openssl dgst -sha256 -hmac 'this is secret' -binary | base64
VECTORS = [
    ("this is secret", 1577262236757, "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="),
    ("SEC0123456789abcdef", 1700000000000, "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk="),
]


@pytest.mark.parametrize(("secret", "ts", "expected"), VECTORS)
def test_dingtalk_sign_matches_openssl_vectors(secret: str, ts: int, expected: str) -> None:
    assert dingtalk_sign(secret, ts) == expected


def test_dingtalk_url_carries_timestamp_and_url_encoded_sign() -> None:
    secret, ts, expected = VECTORS[0]
    request = dingtalk_markdown(DING, title="一键呼救", text="### 一键呼救", secret=secret, timestamp_ms=ts)
    assert request.flavor is Flavor.DINGTALK
    # '+' and '/' and '=' in the Base64 sign must be percent-encoded in the URL.
    assert "&sign=hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D" in request.url
    query = parse_qs(urlsplit(request.url).query)
    assert (
        query["timestamp"] == [str(ts)]
        and query["sign"] == [expected]
        and query["access_token"] == ["abc123"]
    )
    body = json.loads(request.body)
    assert body["msgtype"] == "markdown" and body["markdown"]["title"] == "一键呼救"


def test_dingtalk_mentions_are_written_into_the_text() -> None:
    request = dingtalk_markdown(DING, title="t", text="x", at_mobiles=["13800000000"])
    body = json.loads(request.body)
    assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    assert "@13800000000" in body["markdown"]["text"]
    assert request.url == DING  # no secret: no signature


def test_dingtalk_refuses_bad_urls_and_unsigned_timestamps() -> None:
    with pytest.raises(ChannelError):
        dingtalk_markdown("https://oapi.dingtalk.com/robot/send", title="t", text="x")
    with pytest.raises(ChannelError):
        dingtalk_markdown(DING, title="t", text="x", secret="s")


def test_wecom_bodies_key_and_limits() -> None:
    request = wecom_markdown("693a91f6-key", content="**一键呼救** <@w1>")
    assert request.url == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-key"
    assert json.loads(request.body) == {"msgtype": "markdown", "markdown": {"content": "**一键呼救** <@w1>"}}
    long = wecom_text("k", content="呼" * 2000, mentioned_mobiles=["13800000000"])
    text = json.loads(long.body)["text"]
    assert len(text["content"].encode()) <= WECOM_TEXT_MAX_BYTES and text["content"].endswith("…")
    assert text["mentioned_mobile_list"] == ["13800000000"]
    with pytest.raises(ChannelError):
        wecom_markdown("https://example.org/no-key", content="x")


def test_truncate_keeps_characters_whole() -> None:
    assert truncate_utf8("ab", 10) == "ab"
    cut = truncate_utf8("一二三四", 8)
    assert cut == "一…" and len(cut.encode()) <= 8  # 8 bytes: one 3-byte character + "…"


def test_generic_webhook_signature() -> None:
    request = generic_webhook("https://hooks.example/x", {"a": "一"}, secret="s3", timestamp=1700000000)
    headers = dict(request.headers)
    assert request.body == '{"a":"一"}'.encode()
    assert verify_generic("s3", 1700000000, request.body, headers["X-Linli-Signature"])
    assert not verify_generic("s3", 1700000001, request.body, headers["X-Linli-Signature"])
    assert "X-Linli-Signature" not in dict(generic_webhook("https://hooks.example/x", {}).headers)


def notice(**kw: object) -> CaseNotice:
    base: dict[str, object] = {
        "case_id": "c1",
        "kind": NoticeKind.ESCALATE,
        "category": "sos",
        "severity": "critical",
        "title_zh": "一键呼救",
        "title_en": "SOS button pressed",
        "state": "dispatched",
        "filed_at": datetime(2026, 11, 22, 2, 13, tzinfo=SH).timestamp(),
        "grid": "110105001001001",
        "address": "3号楼2单元401",
        "due_at": datetime(2026, 11, 22, 2, 14, tzinfo=SH).timestamp(),
        "stage": "accept",
        "link": "https://hub.example/cases/c1",
    }
    base.update(kw)
    return CaseNotice(**base)  # type: ignore[arg-type]


def test_message_zh_first_and_en() -> None:
    zh = render(notice(), zone=SH)
    assert zh.title == "【升级】一键呼救"
    assert "紧急" in zh.markdown and "2026-11-22 02:14:00" in zh.markdown and "受理" in zh.text
    en = render(notice(), zone=SH, lang=Lang.EN)
    assert en.title == "[Escalation] SOS button pressed" and "Due: 2026-11-22 02:14:00" in en.text
    assert notice().to_json()["title"] == {"zh": "一键呼救", "en": "SOS button pressed"}


def test_preferences_by_severity_and_critical_goes_everywhere() -> None:
    prefs = Preferences.model_validate(
        {
            "people": [
                {
                    "person_id": "w1",
                    "endpoints": [
                        {"kind": "mqtt", "address": "linli/c/workers/w1/notifications"},
                        {"kind": "dingtalk", "secret_ref": "dingtalk.grid1", "min_severity": "major"},
                        {"kind": "webhook", "secret_ref": "sms", "min_severity": "critical", "lang": "en"},
                    ],
                }
            ]
        }
    )
    assert [e.kind for e in prefs.endpoints_for("w1", "minor")] == [EndpointKind.MQTT]
    assert [e.kind for e in prefs.endpoints_for("w1", "major")] == [EndpointKind.MQTT, EndpointKind.DINGTALK]
    assert len(prefs.endpoints_for("w1", "critical")) == 3
    assert prefs.endpoints_for("w9", "critical") == ()
