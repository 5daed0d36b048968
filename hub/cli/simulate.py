"""``linli simulate``: community, behaviour, scenarios and load against a hub.

Scenarios drive a hub through :class:`HttpHubControl` — MQTT for device messages, the HTTP API
for everything else, and the hub's test clock (``test_clock_start`` in its configuration,
``POST /api/test/clock``) for time — so the same scenario runs against the embedded hub this
command starts, against an external one started with a test clock, or against ``linli demo``
(whose clock follows real time and moves forward for a scenario; the scenario is moved on by
whole weeks to the hub's present, :mod:`simulators.rebase`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import click
import gmqtt
import orjson
from gmqtt.mqtt.constants import MQTTv311

from adapters.errors import LinliError
from hub.app import Hub
from hub.broker import EmbeddedBroker
from hub.casework.replies import ReplyTopics, signed_reply
from hub.casework.reply_keys import ReplyKeys
from hub.cli.common import MQTT_HELP, run_until_done
from hub.cli.field import simulate_device
from hub.config import ApiToken, load_settings
from hub.demo import demo_target
from hub.errors import HubError
from hub.mqtt.url import MqttUrl
from hub.records import Role
from hub.web.api import token_hash
from simulators.community import generate
from simulators.district import generate_district
from simulators.load import LoadConfig, run_load
from simulators.rebase import rebased
from simulators.runner import BrokerAddress, CommunitySimulator
from simulators.scenario import (
    AlertView,
    CaseView,
    NotificationView,
    ScenarioResult,
    TimelineView,
    build_community,
    load_scenario,
    run_scenario,
    shipped_scenarios,
)

PROCESSED_TIMEOUT_S = 10.0


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


class HttpHubControl:
    """The scenario runner's port to a running hub: MQTT in, HTTP API out, test clock for time."""

    def __init__(
        self,
        *,
        http: str,
        token: str,
        broker: MqttUrl,
        reply_keys: ReplyKeys | None = None,
        reply_topics: ReplyTopics | None = None,
    ) -> None:
        # The scenario's people reply from their "apps": replies are signed with their keys
        # (docs/topics.md), on the hub's test-clock time.
        self._reply_keys = reply_keys
        self._reply_topics = reply_topics or ReplyTopics(prefix="linli")
        self._now = 0.0
        self._http = http.rstrip("/")
        self._token = token
        self._broker = broker
        self._session: aiohttp.ClientSession | None = None
        self._mqtt: gmqtt.Client | None = None

    async def __aenter__(self) -> HttpHubControl:
        self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}"})
        self._mqtt = gmqtt.Client(f"linli-scenario-{secrets.token_hex(4)}", clean_session=True)
        if self._broker.username is not None:
            self._mqtt.set_auth_credentials(self._broker.username, self._broker.password)
        await self._mqtt.connect(self._broker.host, self._broker.port, version=MQTTv311)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._mqtt is not None:
            await self._mqtt.disconnect()
        if self._session is not None:
            await self._session.close()

    async def _get(self, path: str) -> Any:
        assert self._session is not None
        async with self._session.get(self._http + path) as response:
            if response.status != 200:
                raise HubError(f"GET {path}: HTTP {response.status}: {await response.text()}")
            return await response.json()

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        assert self._session is not None
        async with self._session.post(self._http + path, json=body) as response:
            if response.status != 200:
                raise HubError(f"POST {path}: HTTP {response.status}: {await response.text()}")
            return await response.json()

    async def _handled(self) -> int:
        stats = await self._get("/api/stats")
        return int(stats["pipeline"]["messages"]) + int(stats["replies"])

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish and wait until the hub has handled the message (the test clock stands still meanwhile)."""
        assert self._mqtt is not None
        payload = self._signed(topic, payload)
        before = await self._handled()
        self._mqtt.publish(topic, payload, qos=qos)
        deadline = asyncio.get_running_loop().time() + PROCESSED_TIMEOUT_S
        while await self._handled() <= before:
            if asyncio.get_running_loop().time() > deadline:
                raise HubError(
                    f"the hub did not handle the message on {topic!r} within {PROCESSED_TIMEOUT_S:.0f} s"
                )
            await asyncio.sleep(0.005)

    def _signed(self, topic: str, payload: bytes) -> bytes:
        parsed = self._reply_topics.parse(topic)
        if parsed is None or self._reply_keys is None:
            return payload
        person = parsed[1]
        key = self._reply_keys.key_for(person)
        if key is None:
            return payload  # unsigned: the hub will refuse it, and the scenario's diff shows it
        body = orjson.loads(payload)
        return signed_reply(
            key,
            person=person,
            case_id=str(body["case_id"]),
            action=str(body["action"]),
            ts=self._now,
            note=str(body.get("note", "")),
            data=body.get("data") or None,
        )

    async def now(self) -> float:
        """The hub's clock (its test clock, or the demo's)."""
        return float((await self._get("/api/test/clock"))["now"])

    async def advance_to(self, ts: float) -> None:
        await self._post("/api/test/clock", {"to": ts})
        self._now = ts

    async def alerts(self) -> Sequence[AlertView]:
        return [
            AlertView(
                id=str(a["id"]),
                rule=a["rule"],
                subject=a["device_id"],
                status=a["status"],
                raised_at=_ts(a["raised_at"]) or 0.0,
                device_id=a["device_id"],
                resolved_at=_ts(a["resolved_at"]),
                count=a["count"],
            )
            for a in await self._get("/api/alerts?limit=1000")
        ]

    async def cases(self) -> Sequence[CaseView]:
        found = [
            *await self._get("/api/cases?limit=1000"),
            *await self._get("/api/cases?state=closed&limit=1000"),
        ]
        return [
            CaseView(
                id=c["id"],
                subject=c["subject"],
                state=c["state"],
                category=c["category"],
                assignee=c["assignee"],
                alert_id=None if c["alert_id"] is None else str(c["alert_id"]),
                resolution=c["resolution"],
                filed_at=_ts(c["filed_at"]) or 0.0,
            )
            for c in found
        ]

    async def case_timeline(self, case_id: str) -> Sequence[TimelineView]:
        detail = await self._get(f"/api/cases/{case_id}")
        return [
            TimelineView(action=e["action"], actor=e["actor"], at=_ts(e["ts"]) or 0.0, to_state=e["to_state"])
            for e in detail["timeline"]
        ]

    async def notifications(self) -> Sequence[NotificationView]:
        return [
            NotificationView(
                recipient=n["recipient"],
                type=n["type"],
                at=n["created_at"],
                case_id=n["case_id"],
                rule=n["rule"],
                topic=n["address"] if n["channel"] == "mqtt" else "",
            )
            for n in await self._get("/api/notifications?limit=10000")
        ]

    async def act(self, case_id: str, action: str, actor: str, note: str) -> None:
        # Recorded as the person (their role's permissions apply), on the command centre's console.
        await self._post(f"/api/cases/{case_id}/{action}", {"note": note, "on_behalf_of": actor})

    async def record_visit(self, elder: str, outcome: str, actor: str, note: str) -> None:
        # The list is urgent first, then by due time: the visit the worker would open first.
        tasks = [t for t in await self._get("/api/visits?limit=500") if t["elder"] == elder]
        if not tasks:
            raise RuntimeError(f"no open visit for {elder}")
        await self._post(f"/api/visits/{tasks[0]['id']}/{outcome}", {"note": note, "on_behalf_of": actor})

    async def evaluate(self, case_id: str, rating: str, note: str) -> None:
        # The desk's own 评价 after its 回访 call (the grid team may not judge its own work).
        body = {"rating": rating, "role": "command_centre", "via": "phone_call", "note": note}
        await self._post(f"/api/cases/{case_id}/evaluate", body)


async def run_embedded_scenario(path: Path, *, work_dir: Path) -> ScenarioResult:
    """Start an embedded broker and a hub on a test clock with the scenario's community, and play it."""
    scenario = load_scenario(path)
    community = build_community(scenario)
    community_file = work_dir / "community.yaml"
    community.write(community_file)
    token = secrets.token_urlsafe(16)
    password = secrets.token_urlsafe(16)
    async with EmbeddedBroker(host="127.0.0.1", port=0, users={"linli": password}) as broker:
        url = f"mqtt://linli:{password}@127.0.0.1:{broker.port}"
        settings = load_settings(
            None,
            environ={},
            overrides={
                "data_dir": str(work_dir / "data"),
                "community_file": str(community_file),
                "timezone": scenario.zone,
                "mqtt": {"url": url, "client_id": "linli-scenario-hub"},
                "http": {"port": 0},
                "api_tokens": [ApiToken(name="scenario", role=Role.ADMIN, sha256=token_hash(token))],
                "test_clock_start": scenario.start.timestamp(),
            },
        )
        keys = ReplyKeys(path=settings.reply_keys_file)
        keys.ensure(str(person["id"]) for person in community.people())
        async with Hub(settings=settings) as hub:
            control = HttpHubControl(
                http=f"http://127.0.0.1:{hub.http_port}",
                token=token,
                broker=MqttUrl.parse(url),
                reply_keys=keys,
            )
            async with control:
                return await run_scenario(scenario, control, community=community)


@click.group()
def simulate() -> None:
    """Simulated communities, device behaviour, scenarios with expected outcomes, and load."""


@simulate.command("community")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same community.")
@click.option(
    "--communities",
    type=click.IntRange(1, 999),
    default=1,
    show_default=True,
    help="More than one: a district, each community with its own gateway topic roots (sources).",
)
@click.option("--grids", type=click.IntRange(1, 99), default=3, show_default=True)
@click.option("--buildings-per-grid", type=click.IntRange(1, 200), default=2, show_default=True)
@click.option("--elders-per-building", type=click.IntRange(0, 500), default=3, show_default=True)
@click.option("--parking-per-grid", type=click.IntRange(0, 500), default=2, show_default=True)
@click.option("--living-alone-share", type=click.FloatRange(0, 1), default=0.6, show_default=True)
@click.option(
    "--mix", help="Device families, e.g. zigbee2mqtt=0.55,ttn_v3=0.15,… (default: the built-in mix)."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Registry file to write.",
)
def simulate_community(
    *,
    seed: int,
    communities: int,
    grids: int,
    buildings_per_grid: int,
    elders_per_building: int,
    parking_per_grid: int,
    living_alone_share: float,
    mix: str | None,
    output: Path,
) -> None:
    """Generate a community in the registry's import format (linli community import reads it)."""
    shape = {
        "grids": grids,
        "buildings_per_grid": buildings_per_grid,
        "elders_per_building": elders_per_building,
        "parking_per_grid": parking_per_grid,
        "living_alone_share": living_alone_share,
    }
    if communities > 1:
        if mix is not None:
            raise click.ClickException("--mix is fixed for a district (families with per-community roots)")
        community = generate_district(communities=communities, seed=seed, **shape)
    else:
        community = generate(seed=seed, mix=mix, **shape)  # type: ignore[arg-type]
    community.write(output)
    click.echo(f"wrote {output}: {len(community.communities)} communities, {len(community.devices)} devices")


simulate.add_command(simulate_device)


@simulate.command("run")
@click.option("--mqtt", "mqtt_url", metavar="URL", required=True, help=MQTT_HELP)
@click.option("--community", "community_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.001),
    default=1.0,
    show_default=True,
    help="Simulated seconds per second.",
)
@click.option(
    "--sos-every", type=float, default=45.0, show_default=True, help="Mean seconds between SOS presses."
)
def simulate_run(
    mqtt_url: str, community_file: Path | None, seed: int, speed: float, sos_every: float
) -> None:
    """Make a community's devices behave and publish in their real formats until Ctrl-C."""
    from simulators.community import load  # noqa: PLC0415 - only this command reads a file

    community = load(community_file) if community_file else generate(seed=seed)
    url = MqttUrl.parse(mqtt_url, key="--mqtt")
    broker = BrokerAddress(url.host, url.port, url.username, url.password)

    async def go() -> None:
        simulator = CommunitySimulator(
            broker=broker, devices=community.devices, seed=seed, sos_every_s=sos_every, speed=speed
        )
        with contextlib.suppress(asyncio.CancelledError):
            await simulator.run()

    run_until_done(go())


@simulate.command("scenario")
@click.argument("files", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--expect",
    is_flag=True,
    help="Compare with the scenario's expectations; exit 1 with a diff if they differ.",
)
@click.option(
    "--hub",
    "hub_url",
    help="A running hub's HTTP address (started with test_clock_start, or `linli demo`);"
    " default: an embedded one. The scenario moves on by whole weeks to the hub's present.",
)
@click.option(
    "--token", envvar="LINLI_API_TOKEN", help="Admin token of the external hub (or LINLI_API_TOKEN)."
)
@click.option("--mqtt", "mqtt_url", metavar="URL", help=MQTT_HELP + " The external hub's broker.")
@click.option(
    "--reply-keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The external hub's reply-keys file, to sign the scenario's MQTT replies (docs/topics.md).",
)
@click.option(
    "--demo",
    "demo_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The data directory of a running `linli demo`: its hub, token, broker and reply keys"
    " (as its banner prints).",
)
@click.option("-v", "--verbose", is_flag=True, help="Print what the runner did, step by step.")
def simulate_scenario(
    *,
    files: tuple[Path, ...],
    expect: bool,
    hub_url: str | None,
    token: str | None,
    mqtt_url: str | None,
    reply_keys: Path | None,
    demo_dir: Path | None,
    verbose: bool,
) -> None:
    """Play scenario FILES (default: every shipped scenario) against a hub."""
    paths = list(files) or shipped_scenarios()
    if demo_dir is not None:
        if hub_url:
            raise click.ClickException("--demo names the hub: leave out --hub")
        try:
            target = demo_target(demo_dir.resolve())
        except LinliError as exc:
            raise click.ClickException(str(exc)) from None
        hub_url, token, mqtt_url, reply_keys = target.http, target.token, target.mqtt_url, target.reply_keys
    failed = 0
    for path in paths:
        try:
            if hub_url:
                if not (token and mqtt_url):
                    raise click.ClickException("an external hub needs --token and --mqtt")

                async def external(path: Path = path) -> ScenarioResult:
                    control = HttpHubControl(
                        http=hub_url,
                        token=token or "",
                        broker=MqttUrl.parse(mqtt_url or ""),
                        reply_keys=ReplyKeys(path=reply_keys) if reply_keys else None,
                    )
                    async with control:
                        # A hub's clock never runs back: the scenario moves on by whole weeks to
                        # the hub's present (same weekday and time of day), e.g. for `linli demo`.
                        scenario = rebased(load_scenario(path), now=await control.now())
                        return await run_scenario(scenario, control)

                result = asyncio.run(external())
            else:
                with tempfile.TemporaryDirectory(prefix="linli-scenario-") as work:
                    result = asyncio.run(run_embedded_scenario(path, work_dir=Path(work)))
        except LinliError as exc:
            raise click.ClickException(f"{path}: {exc}") from None
        if verbose:
            click.echo("\n".join(result.log))
        status = "ok  " if result.passed else "FAIL"
        click.echo(f"{status} {path.name}")
        if not result.passed:
            failed += 1
            if expect:
                click.echo(result.diff)
    click.echo(f"{len(paths) - failed} passed, {failed} failed")
    if expect and failed:
        sys.exit(1)


@simulate.command("load")
@click.option("--mqtt", "mqtt_url", metavar="URL", required=True, help=MQTT_HELP)
@click.option(
    "--rate", type=click.FloatRange(min=1), default=10_000, show_default=True, help="Messages per second."
)
@click.option("--devices", type=click.IntRange(1), default=5_000, show_default=True)
@click.option("--duration", type=click.FloatRange(min=0.1), default=10, show_default=True, help="Seconds.")
@click.option("--format", "mix", default=LoadConfig().mix, show_default=True, help="Family mix.")
@click.option(
    "--processes", type=click.IntRange(1), help="Publisher processes (default: as many as the rate needs)."
)
def simulate_load(
    *, mqtt_url: str, rate: float, devices: int, duration: float, mix: str, processes: int | None
) -> None:
    """Publish at a steady rate; the JSON report says what was really achieved (exit 1 below 95 %)."""
    url = MqttUrl.parse(mqtt_url, key="--mqtt")
    report = run_load(
        LoadConfig(
            host=url.host,
            port=url.port,
            username=url.username,
            password=url.password,
            rate=rate,
            devices=devices,
            duration=duration,
            mix=mix,
            processes=processes,
        )
    )
    click.echo(report.json())
    if not report.ok:
        sys.exit(1)
