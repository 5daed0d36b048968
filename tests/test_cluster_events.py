"""Live events between the nodes of a cluster over a real PostgreSQL's LISTEN/NOTIFY.

Payloads stay under the 8000-byte limit whatever the burst; another node's change reaches
``on_remote`` once, a node's own never; a listener whose connection is killed reconnects and
hears what follows. The whole path (two hub processes, an SSE client on one seeing a case
opened by the other) is tests/test_cluster_hubs.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import psycopg
import pytest

from hub.cluster.events import CHANNEL, PAYLOAD_LIMIT, Change, ClusterEvents, Kind, decode, encode


def test_a_burst_is_cut_into_payloads_under_the_limit_in_order() -> None:
    changes = [Change(Kind.CASE, f"C-20260101-{i:06d}-长的编号", created=i % 2 == 0) for i in range(2000)]
    payloads = list(encode("hub-a", changes))
    assert len(payloads) > 1
    assert all(len(p.encode()) <= PAYLOAD_LIMIT < 8000 for p in payloads)
    decoded = [decode(p) for p in payloads]
    assert {node for node, _ in decoded} == {"hub-a"}
    assert [c for _, batch in decoded for c in batch] == changes


def test_a_malformed_payload_is_refused() -> None:
    for payload in ["", "{}", '{"n": 1, "e": []}', '{"n": "a", "e": [["bogus", "1", 0]]}', "[1]"]:
        with pytest.raises(ValueError, match="not a change notification"):
            decode(payload)


async def until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)


async def test_another_nodes_change_arrives_once_and_a_nodes_own_never(postgres_url: str) -> None:
    heard: dict[str, list[Change]] = {"hub-a": [], "hub-b": []}
    a = ClusterEvents(url=postgres_url, node_id="hub-a", on_remote=heard["hub-a"].append)
    b = ClusterEvents(url=postgres_url, node_id="hub-b", on_remote=heard["hub-b"].append)
    for events in (a, b):
        events.start()
    try:
        await asyncio.wait_for(asyncio.gather(a.listening.wait(), b.listening.wait()), 10)
        a.changed(Kind.ALERT, 41, created=True)
        a.changed(Kind.CASE, "C-1")
        await until(lambda: len(heard["hub-b"]) == 2, within=5, what="hub-b hearing hub-a's two changes")
        b.changed(Kind.CASE, "C-2")
        await until(lambda: len(heard["hub-a"]) == 1, within=5, what="hub-a hearing hub-b's change")
        # A burst far over one payload's worth: every change once, in order.
        burst = [f"C-{i:05d}" for i in range(1500)]
        for case_id in burst:
            a.changed(Kind.CASE, case_id)
        await until(lambda: len(heard["hub-b"]) == 2 + len(burst), within=10, what="the burst")
        await asyncio.sleep(0.3)  # anything delivered twice, or to its own node, would be here by now
    finally:
        await a.stop()
        await b.stop()
    assert heard["hub-b"][:2] == [Change(Kind.ALERT, "41", created=True), Change(Kind.CASE, "C-1")]
    assert [c.id for c in heard["hub-b"][2:]] == burst
    assert heard["hub-a"] == [Change(Kind.CASE, "C-2")], "a node's own changes are never handed back to it"
    assert b.heard >= 3 and a.sent == 2 + len(burst)


async def test_a_listener_whose_connection_died_reconnects(postgres_url: str) -> None:
    heard: list[Change] = []
    b = ClusterEvents(url=postgres_url, node_id="hub-b", on_remote=heard.append)
    b.start()
    try:
        await asyncio.wait_for(b.listening.wait(), 10)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            mine = "FROM pg_stat_activity WHERE application_name = 'linli-events-hub-b'"

            def count(select: str) -> int:
                row = admin.execute(f"SELECT {select} {mine}").fetchone()
                return int(row[0]) if row else 0

            await until(
                lambda: count("count(*)") == 2, within=5, what="the listener's and sender's connections"
            )
            assert count("count(pg_terminate_backend(pid))") == 2
            await until(lambda: not b.listening.is_set(), within=5, what="the listener noticing")
            await asyncio.wait_for(b.listening.wait(), 10)
            # Another node's change (sent by hand, as a node would) reaches the new connection.
            payload = json.dumps({"n": "hub-a", "e": [["case", "C-after", 0]]})
            admin.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            await until(lambda: bool(heard), within=5, what="the change after the reconnection")
            admin.execute("SELECT pg_notify(%s, %s)", (CHANNEL, "not json"))  # logged and ignored
            admin.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            await until(lambda: len(heard) == 2, within=5, what="the listener surviving a malformed payload")
        # The sender reconnects too.
        b.changed(Kind.CASE, "C-from-b")
        await until(lambda: b.sent == 1, within=10, what="the sender after reconnecting")
    finally:
        await b.stop()
    assert heard == [Change(Kind.CASE, "C-after"), Change(Kind.CASE, "C-after")]
