"""``linli doctor``'s round trips (gateways, roster persons): which topics, as whom, and the findings.

The probing itself is :mod:`hub.mqtt.roundtrip`; the topics are the hub's own gateway filters
(:func:`hub.casework.broker_access.probe_targets`) for the registry the hub would start on.
Findings are zh-CN first, then English, on one line, as the CLI's other bilingual lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from adapters.errors import LinliError
from adapters.router import FamilySource
from hub.casework.broker_access import probe_targets, worker_targets
from hub.community.files import load_yaml
from hub.community.model import Community
from hub.config import STORE_FILE, Settings
from hub.errors import MqttError
from hub.mqtt.roundtrip import (
    ROUND_TRIP_TIMEOUT_S,
    Outcome,
    ProbeTarget,
    RoundTrip,
    RoundTripReport,
    round_trip,
)
from hub.mqtt.url import MqttUrl
from hub.storage.store import Store
from hub.timeseries import Finding, Level

#: Lines printed per kind of failure; the rest are counted (a district has thousands of roots).
SHOWN = 10

NOT_RUN = (
    "网关往返未检查：用 --gateway-mqtt 给出网关的凭据 / gateway round trip not checked: give a"
    " gateway's credential with --gateway-mqtt (a broker ACL can drop every press while the hub"
    " says ready; docs/operations.md)"
)


def registry_communities(settings: Settings) -> list[Community]:
    """The communities the hub would start on: the community file when set (a start imports it),
    else what the store holds. Empty when neither can be read (``community_finding`` says why);
    the round trip then covers the hub-wide roots only."""
    try:
        if settings.community_file is not None:
            return list(load_yaml(settings.community_file))
        if settings.store.url is None and not (Path(settings.data_dir) / STORE_FILE).exists():
            return []  # no hub has run here: nothing to read, and no store to create
        store = Store(url=settings.store.resolved_url(Path(settings.data_dir)))
        try:
            return store.communities()
        finally:
            store.close()
    except LinliError:
        return []


async def gateway_round_trip(settings: Settings, urls: Sequence[str]) -> list[Finding]:
    """The round trip with each of ``urls`` as a publisher; one warning when none is given."""
    if not urls:
        return [Finding(level=Level.WARN, message=NOT_RUN)]
    publishers: list[MqttUrl] = []
    for n, url in enumerate(urls, 1):
        try:
            publishers.append(MqttUrl.parse(url, key="--gateway-mqtt"))
        except LinliError:
            # Not the parser's message: it may quote the text, and the text holds a password.
            return [
                Finding(
                    level=Level.ERROR,
                    message=f"网关往返：第 {n} 个凭据不是 MQTT URL / gateway round trip: credential {n}"
                    " is not an MQTT URL (mqtt://user:pass@host:port)",
                )
            ]
    hub = settings.mqtt.parsed_url
    targets = probe_targets(
        [FamilySource(s.family, s.base_topic) for s in settings.sources], registry_communities(settings)
    )
    try:
        report = await round_trip(
            hub_url=hub,
            publishers=publishers,
            targets=targets,
            tls_ca_file=str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None,
        )
    except MqttError as exc:
        return [Finding(level=Level.ERROR, message=f"网关往返 / gateway round trip: {exc}")]
    return findings(report, hub_user=hub.username or "anonymous")


def findings(
    report: RoundTripReport, *, hub_user: str, timeout_s: float = ROUND_TRIP_TIMEOUT_S
) -> list[Finding]:
    """What the operator reads: one line per problem (up to :data:`SHOWN` of a kind), one ``ok`` line."""
    out = [
        Finding(level=Level.ERROR, message=f"网关往返：无法以 {user!r} 连接 / gateway round trip: {why}")
        for user, why in report.unreachable
    ]
    by_outcome: dict[Outcome, list[RoundTrip]] = {}
    for result in report.results:
        by_outcome.setdefault(result.outcome, []).append(result)
    hub = repr(hub_user)
    texts: dict[Outcome, tuple[Level, Callable[[RoundTrip], str]]] = {
        Outcome.REFUSED: (
            Level.ERROR,
            lambda r: (
                f"网关往返：代理拒绝了 hub 凭据 {hub} 对 {r.target.topic_filter} 的订阅（SUBACK 0x80）"
                f" / gateway round trip: the broker refused the hub's credential {hub} the subscription to"
                f" {r.target.topic_filter} (SUBACK 0x80): nothing published there arrives"
            ),
        ),
        Outcome.LOST: (
            Level.ERROR,
            lambda r: (
                f"网关往返：代理接受了 {_names(r)} 在 {r.target.topic} 上发布的探测消息，却没有投递给"
                f"已订阅 {r.target.topic_filter} 的 hub 凭据 {hub}（SUBACK 已授予）：ACL 不让 hub 读取这里，"
                f"该网关的每一次 SOS 都会被悄悄丢弃 / gateway round trip: the broker accepted a probe from"
                f" {_names(r)} on {r.target.topic} and never delivered it to the hub's credential {hub},"
                f" subscribed to {r.target.topic_filter} with the SUBACK granted: its ACL does not let the"
                f" hub read there, and every SOS press from that gateway is dropped silently (grant {hub}"
                f" read on {r.target.topic_filter})"
            ),
        ),
        Outcome.UNCONFIRMED: (
            Level.ERROR,
            lambda r: (
                f"网关往返：{_names(r)} 在 {r.target.topic} 上发布的探测消息 {timeout_s:g} 秒内没有到达"
                f" hub 凭据 {hub}，代理不说明原因（MQTT 3.1.1）：要么不许它在此发布，要么不许 hub 读取"
                f" / gateway round trip: a probe published by {_names(r)} on {r.target.topic} did not"
                f" reach the hub's credential {hub} (subscribed to {r.target.topic_filter}) within"
                f" {timeout_s:g} s, and the broker does not say why (MQTT 3.1.1): either it may not"
                " publish there or the hub may not read it"
            ),
        ),
        Outcome.DENIED: (
            Level.WARN,
            lambda r: (
                f"网关往返：未检查 {r.target.topic}，给出的凭据 {_names(r)} 都不许在此发布"
                f"（PUBACK 0x87）/ gateway round trip: {r.target.topic} not checked: the broker refused"
                f" the publish to every credential given ({_names(r)}; PUBACK 0x87); give the credential"
                " of the gateway that publishes there"
            ),
        ),
    }
    for outcome, (level, text) in texts.items():
        found = by_outcome.get(outcome, [])
        out += [Finding(level=level, message=text(r)) for r in found[:SHOWN]]
        if len(found) > SHOWN:
            more = len(found) - SHOWN
            out.append(
                Finding(
                    level=level,
                    message=f"网关往返：另有 {more} 个同类 / gateway round trip: {more} more like it",
                )
            )
    received = len(by_outcome.get(Outcome.RECEIVED, []))
    if received:
        out.append(
            Finding(
                level=Level.OK,
                message=f"网关往返：{received} 个网关主题的探测消息到达了 hub 凭据 {hub} / gateway round"
                f" trip: a probe on each of {received} gateway topic(s) reached the hub's credential {hub}",
            )
        )
    return out


def _names(result: RoundTrip) -> str:
    return ", ".join(repr(name) for name in result.publishers)


WORKER_NOT_RUN = (
    "工作人员往返未检查：用 --worker-mqtt 给出一名网格员的凭据 / worker round trip not checked:"
    " give a roster person's credential with --worker-mqtt (an ACL can drop their SOS"
    " notifications, or their replies, while the hub says ready)"
)


async def worker_round_trip(settings: Settings, urls: Sequence[str]) -> list[Finding]:
    """Each person's two paths, with their own credential (user name = person id):

    * a reply they publish on their reply topic reaches the hub's credential;
    * a notification the hub's credential publishes on their notification topic reaches them.

    Both are silent when an ACL breaks them: Mosquitto acknowledges a denied publish to a 3.1.1
    client and drops it [MQTT-3.3.5-2], and grants a subscription it then delivers nothing on.
    The notification probe reaches the person's app too, if it is connected (a JSON array
    ``["linli-doctor", …]``, which no notification is).
    """
    if not urls:
        return [Finding(level=Level.WARN, message=WORKER_NOT_RUN)]
    hub = settings.mqtt.parsed_url
    hub_user = hub.username or "anonymous"
    tls = str(settings.mqtt.tls_ca_file) if settings.mqtt.tls_ca_file else None
    communities = registry_communities(settings)
    out: list[Finding] = []
    for n, url in enumerate(urls, 1):
        try:
            worker = MqttUrl.parse(url, key="--worker-mqtt")
        except LinliError:
            # Not the parser's message: it may quote the text, and the text holds a password.
            out.append(
                Finding(
                    level=Level.ERROR,
                    message=f"工作人员往返：第 {n} 个凭据不是 MQTT URL / worker round trip: credential {n}"
                    " is not an MQTT URL (mqtt://person:pass@host:port)",
                )
            )
            continue
        person = worker.username or ""
        trips = worker_targets(person, communities, topic_prefix=settings.mqtt.topic_prefix)
        if not trips:
            out.append(
                Finding(
                    level=Level.ERROR,
                    message=f"工作人员往返：{person!r} 不在任何社区的人员名单中 / worker round trip:"
                    f" {person!r} is in no community's roster (a person's broker user is their id)",
                )
            )
            continue
        for trip in trips:
            try:
                replies = await round_trip(
                    hub_url=hub, publishers=[worker], targets=[trip.reply], tls_ca_file=tls
                )
                told = await round_trip(
                    hub_url=worker, publishers=[hub], targets=[trip.notifications], tls_ca_file=tls
                )
            except MqttError as exc:
                out.append(Finding(level=Level.ERROR, message=f"工作人员往返 / worker round trip: {exc}"))
                continue
            out += _worker_findings(person, hub_user, trip.reply, replies, reply=True)
            out += _worker_findings(person, hub_user, trip.notifications, told, reply=False)
    return out


def _worker_findings(
    person: str, hub_user: str, target: ProbeTarget, report: RoundTripReport, *, reply: bool
) -> list[Finding]:
    """What one direction's round trip means for ``person``; ``reply``: they publish, the hub reads."""
    sender, receiver = (repr(person), f"hub {hub_user!r}") if reply else (f"hub {hub_user!r}", repr(person))
    what_zh, what_en = (
        ("回复（受理、到场、反馈）", "replies (受理/到场/反馈)")
        if reply
        else ("通知（含 SOS）", "notifications (SOS included)")
    )
    found = [
        Finding(level=Level.ERROR, message=f"工作人员往返：无法以 {user!r} 连接 / worker round trip: {why}")
        for user, why in report.unreachable
    ]
    for result in report.results:
        outcome = result.outcome
        if outcome is Outcome.RECEIVED:
            found.append(
                Finding(
                    level=Level.OK,
                    message=f"工作人员往返：{sender} 在 {target.topic} 上的探测消息到达了 {receiver}"
                    f" / worker round trip: a probe {sender} published on {target.topic} reached {receiver}",
                )
            )
            continue
        why_zh, why_en = {
            Outcome.REFUSED: (
                f"代理拒绝了 {receiver} 对 {target.topic_filter} 的订阅",
                f"the broker refused {receiver} the subscription to {target.topic_filter} (SUBACK 0x80)",
            ),
            Outcome.DENIED: (
                f"代理不许 {sender} 在 {target.topic} 上发布（PUBACK 0x87）",
                f"the broker refused {sender} the publish on {target.topic} (PUBACK 0x87): grant it write there",
            ),
            Outcome.LOST: (
                f"代理接受了 {sender} 在 {target.topic} 上的探测消息，却没有投递给 {receiver}",
                f"the broker accepted {sender}'s probe on {target.topic} and never delivered it to {receiver}:"
                f" grant {receiver} read on {target.topic_filter}",
            ),
            Outcome.UNCONFIRMED: (
                f"{sender} 在 {target.topic} 上的探测消息 {ROUND_TRIP_TIMEOUT_S:g} 秒内没有到达 {receiver}，代理不说明原因",
                f"{sender}'s probe on {target.topic} did not reach {receiver} within"
                f" {ROUND_TRIP_TIMEOUT_S:g} s, and the broker does not say why (MQTT 3.1.1): either"
                " the publish or the read is not allowed",
            ),
        }[outcome]
        found.append(
            Finding(
                level=Level.ERROR,
                message=f"工作人员往返：{why_zh}，{person!r} 的{what_zh}会被悄悄丢弃 / worker round trip:"
                f" {why_en}; {person!r}'s {what_en} are dropped silently",
            )
        )
    return found
