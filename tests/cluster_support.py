"""Hub processes sharing one PostgreSQL store and one Mosquitto: the cluster tests' harness.

Six communities, each with its own Zigbee2MQTT root (``zigbee2mqtt-<code>``), six SOS
buttons and a door sensor, a grid worker on duty around the clock, a grid leader and a
supervisor. Hubs run as ``linli run`` subprocesses (``kill -9`` and ``SIGSTOP`` need real
processes), their logs in files so a full pipe never blocks one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub.storage.leases import ClusterStatus, LeaseStore
from hub.storage.scope import WHOLE_HUB
from hub.storage.store import Store
from tests.support.samples import SAMPLES
from tests.support.servers import Broker

LINLI = str(Path(sys.executable).with_name("linli"))
COMMUNITIES = [f"110105001{n:03d}" for n in range(1, 7)]
#: SOS buttons per community (each press of a different button is a new case).
BUTTONS = 6
SOS = (SAMPLES / "zigbee2mqtt" / "tuya_ts0215a_sos_emergency.json").read_bytes()
DOOR_OPEN = (SAMPLES / "zigbee2mqtt" / "aqara_mccgq11lm_open.json").read_bytes()
DOOR_CLOSED = DOOR_OPEN.replace(b'"contact":false', b'"contact":true')
#: Step 1 falls due one second after dispatch: inside the outage when a hub dies right after.
POLICIES = {
    "version": 1,
    "sla": [
        {"category": "sos", "basis": "calendar", "stages": {"accept": "1h", "arrive": "1h"}, "case": "4h"}
    ],
    "escalation": [
        {
            "category": "sos",
            "dispatched": [
                {"after": "0s", "kind": "notify", "targets": ["assignee"]},
                {"after": "1s", "targets": ["grid_leader"]},
                {"after": "8s", "targets": ["command_supervisor"]},
            ],
        }
    ],
}


#: Every gateway's password in the tests' broker (each logs in as the name of its root).
GATEWAY_PASSWORD = "gateway-test-secret"
HUB_USER, HUB_PASSWORD = "linli", "hub-test-secret"


def root(community: str) -> str:
    """The community's Zigbee2MQTT root, which is also its gateway's user name (deploy/mosquitto/acl)."""
    return f"zigbee2mqtt-{community}"


def broker_users() -> dict[str, str]:
    return {HUB_USER: HUB_PASSWORD, **{root(c): GATEWAY_PASSWORD for c in COMMUNITIES}}


def button(community: str, n: int) -> str:
    return f"sos-{community[-3:]}-{n}"


def door(community: str) -> str:
    return f"door-{community[-3:]}"


def registry() -> dict[str, Any]:
    always = [{"start": "00:00", "end": "00:00"}]
    communities = []
    for code in COMMUNITIES:
        grid = code + "001"
        communities.append(
            {
                "code": code,
                "name": f"社区{code[-3:]}",
                "sources": [{"family": "zigbee2mqtt", "base_topic": root(code)}],
                "grids": [{"code": grid, "name": "第一网格"}],
                "people": [
                    {
                        "id": f"w-{code}",
                        "name": "网格员",
                        "role": "grid_worker",
                        "grids": [grid],
                        "shifts": always,
                    },
                    {
                        "id": f"lead-{code}",
                        "name": "网格长",
                        "role": "grid_leader",
                        "grids": [grid],
                        "shifts": always,
                    },
                    {
                        "id": f"boss-{code}",
                        "name": "指挥长",
                        "role": "command_supervisor",
                        "grids": [grid],
                        "shifts": always,
                    },
                ],
                "devices": [
                    *(
                        {"id": button(code, n), "kind": "sos_button", "model": "TS0215A", "grid": grid}
                        for n in range(BUTTONS)
                    ),
                    {"id": door(code), "kind": "door_sensor", "model": "MCCGQ11LM", "grid": grid},
                ],
            }
        )
    return {"version": 1, "communities": communities}


#: The command centre's token on every hub of the cluster (its SHA-256 in each configuration).
API_TOKEN = "cluster-test-command-centre"


class NoSessions:
    """Community sessions for a cluster runtime tested in process: leases move, no MQTT opens."""

    async def open(self, community: str) -> None:
        pass

    async def close(self, community: str) -> None:
        pass

    async def close_all(self) -> None:
        pass


@dataclass
class HubProcess:
    node_id: str
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [LINLI, "run", "--config", str(self.config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
        handle.close()

    async def ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while b"console http://" not in self.log.read_bytes():
            assert self.proc is not None and self.proc.poll() is None, (
                f"{self.node_id} exited:\n{self.tail()}"
            )
            assert time.monotonic() < deadline, f"{self.node_id} not ready:\n{self.tail()}"
            await asyncio.sleep(0.1)

    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, from the line the hub logs once it serves."""
        found = re.search(rb"console (http://[0-9.]+:[0-9]+)/", self.log.read_bytes())
        assert found, f"{self.node_id} logged no console address:\n{self.tail()}"
        return found.group(1).decode()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Cluster:
    tmp: Path
    broker: Broker
    store_url: str
    lease_s: float
    hubs: dict[str, HubProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.tmp / "community.yaml").write_text(yaml.safe_dump(registry(), allow_unicode=True))
        (self.tmp / "policies.yaml").write_text(yaml.safe_dump(POLICIES))
        self.store = Store(url=self.store_url)
        self.leases = LeaseStore(store=self.store, node_id="(test)", lease_s=self.lease_s)

    def add(self, node_id: str) -> HubProcess:
        config = self.tmp / f"{node_id}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(self.tmp / node_id),
                    "community_file": str(self.tmp / "community.yaml"),
                    "policies_file": str(self.tmp / "policies.yaml"),
                    "store": {"url": self.store_url},
                    "cluster": {"node_id": node_id, "lease_s": self.lease_s},
                    "http": {"port": 0},
                    "api_tokens": [
                        {"name": "test", "sha256": hashlib.sha256(API_TOKEN.encode()).hexdigest()}
                    ],
                    "mqtt": {"url": self.broker.url, "client_id": f"linli-{node_id}"},
                }
            )
        )
        hub = HubProcess(node_id, config, self.tmp / f"{node_id}.log")
        self.hubs[node_id] = hub
        hub.start()
        return hub

    def close(self) -> None:
        for hub in self.hubs.values():
            hub.stop()
        self.store.close()

    def status(self) -> ClusterStatus:
        return self.leases.status()

    def owners(self) -> dict[str, str]:
        """community → owner, for live (unexpired) leases only (the hub-wide partition left out)."""
        status = self.status()
        return {
            lease.community: lease.owner
            for lease in status.leases
            if lease.expires_at > status.now and lease.community != WHOLE_HUB
        }

    def shares(self) -> Counter[str]:
        return Counter(self.owners().values())

    def count(self, sql: str, params: tuple[object, ...] = ()) -> int:
        return int(self.store.execute(sql, params).fetchone()[0])

    def cases_by_device(self) -> Counter[str]:
        rows = self.store.execute(
            "SELECT a.device_id FROM cases c JOIN alerts a ON a.id = c.alert_id"
        ).fetchall()
        return Counter(str(row[0]) for row in rows)
