"""Bounded fan-out (issue 12): an event-stream client that stops reading is dropped, others keep up."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import orjson

from hub.app import Hub
from hub.clock import ManualClock
from hub.health.metrics import render
from hub.web.stream import DROP_PER_SWEEP, AlertBus, StreamEvent
from tests.helpers import TOKEN, eventually, hub_settings

PRESS = 1_795_371_180.0


def case_event(n: int, *, pad: int = 0) -> dict[str, Any]:
    return {"type": "case", "case": {"id": f"c{n}", "community": "c", "grid": "g", "note": "x" * pad}}


async def test_a_listener_that_never_reads_is_dropped_at_the_bound_and_others_keep_receiving() -> None:
    bus = AlertBus(queue_size=8)
    dropped: list[int] = []
    stalled = bus.subscribe(on_drop=lambda: dropped.append(len(dropped)))
    reader = bus.subscribe()
    got: list[StreamEvent] = []
    for n in range(20):
        bus.publish(case_event(n))
        got.extend(await bus.next_batch(reader, idle_s=1))
        if n < 8:
            assert not stalled.dropped and dropped == [], n  # within the bound: kept
            assert bus.behind(stalled) == n + 1
        else:
            assert stalled.dropped and dropped == [0], n  # the 9th event put it over: dropped once
    assert [e.message["case"]["id"] for e in got] == [f"c{n}" for n in range(20)]
    assert len(bus) == 1 and bus.dropped == 1
    assert await bus.next_batch(stalled, idle_s=1) == []  # nothing more reaches it


async def test_a_listener_over_the_bound_between_sweeps_is_dropped_when_it_reads() -> None:
    bus = AlertBus(queue_size=16)  # swept every 2 events
    slow = bus.subscribe()
    for n in range(17):
        bus.publish(case_event(n))
    assert not slow.dropped and bus.behind(slow) == 17  # the 17th was no sweep
    assert await bus.next_batch(slow, idle_s=1) == [] and slow.dropped and bus.dropped == 1


async def test_many_stalled_listeners_are_dropped_a_few_per_sweep() -> None:
    bus = AlertBus(queue_size=8)  # swept every event
    stalled = [bus.subscribe() for _ in range(40)]
    reader = bus.subscribe()
    for n in range(9):
        bus.publish(case_event(n))
        await bus.next_batch(reader, idle_s=1)
    assert bus.dropped == DROP_PER_SWEEP  # the first sweep over the bound
    bus.publish(case_event(9))
    await bus.next_batch(reader, idle_s=1)
    assert bus.dropped == 2 * DROP_PER_SWEEP
    bus.publish(case_event(10))
    assert bus.dropped == 40 and all(x.dropped for x in stalled) and not reader.dropped
    assert len(bus) == 1


async def test_a_batch_is_bounded_in_bytes_and_an_idle_wait_times_out() -> None:
    bus = AlertBus()
    listener = bus.subscribe()
    assert await bus.next_batch(listener, idle_s=0.05) == []  # idle: the stream sends a keepalive
    for n in range(10):
        bus.publish(case_event(n, pad=1000))
    first = await bus.next_batch(listener, idle_s=1, max_bytes=3000)
    assert [e.message["case"]["id"] for e in first] == ["c0", "c1"]
    rest = await bus.next_batch(listener, idle_s=1)
    assert [e.message["case"]["id"] for e in rest] == [f"c{n}" for n in range(2, 10)]
    big = case_event(99, pad=10_000)
    bus.publish(big)
    assert [e.message for e in await bus.next_batch(listener, idle_s=1, max_bytes=100)] == [big]


async def test_a_waiting_stream_wakes_on_publish_and_close_all_ends_every_wait() -> None:
    bus = AlertBus()
    listeners = [bus.subscribe() for _ in range(250)]
    assert bus.pace() == 5 * 0.05
    waiting = [asyncio.create_task(bus.next_batch(x, idle_s=30), name="waiting") for x in listeners[:2]]
    await asyncio.sleep(0.01)
    bus.publish(case_event(1))
    assert [[e.message for e in b] for b in await asyncio.wait_for(asyncio.gather(*waiting), 1)] == [
        [case_event(1)],
        [case_event(1)],
    ]
    waiting = [asyncio.create_task(bus.next_batch(x, idle_s=30), name="waiting") for x in listeners[:2]]
    await asyncio.sleep(0.01)
    bus.close_all()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 1) == [[], []]
    assert all(x.closed for x in listeners)


async def test_an_event_is_encoded_once_and_shared_by_every_listener() -> None:
    bus = AlertBus()
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish(case_event(1))
    (first,), (second,) = await bus.next_batch(a, idle_s=1), await bus.next_batch(b, idle_s=1)
    assert first is second
    assert first.frame.startswith(b"event: case\ndata: ")
    assert orjson.loads(first.frame.split(b"data: ", 1)[1]) == case_event(1)
    calls: list[str] = []
    for reader in ("centre", "centre", "viewer"):
        first.visible_to(reader, lambda m, r=reader: calls.append(r) is None)
    assert calls == ["centre", "viewer"]  # the access table asked once per kind of reader


async def test_a_failing_drop_callback_does_not_fail_the_publisher() -> None:
    bus = AlertBus(queue_size=1)

    def broken() -> None:
        raise RuntimeError("socket gone")

    bus.subscribe(on_drop=broken)
    bus.publish(case_event(1))
    bus.publish(case_event(2))  # over the bound: the callback raises, publish does not
    assert len(bus) == 0 and bus.dropped == 1


def stalled_client(port: int) -> socket.socket:
    """An authenticated ``GET /api/stream`` that never reads (a tiny receive buffer stalls it fast)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    return sock


def read_until_closed(sock: socket.socket) -> int:
    """Everything the hub had sent, until it closed or reset the connection; returns the bytes read."""
    sock.settimeout(10)
    total = 0
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return total
        if not chunk:
            return total
        total += len(chunk)


async def test_a_stalled_socket_is_aborted_while_a_reading_client_gets_every_event(
    tmp_path: Path, mosquitto_broker: Any
) -> None:
    async with Hub(settings=hub_settings(tmp_path, mosquitto_broker), clock=ManualClock(start=PRESS)) as hub:
        base = f"http://127.0.0.1:{hub.http_port}"
        received: list[str] = []

        async def listen() -> None:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                httpx.AsyncClient(base_url=base, headers=headers, timeout=None) as client,
                client.stream("GET", "/api/stream") as response,
            ):
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        received.append(orjson.loads(line[6:])["case"]["id"])

        reader = asyncio.create_task(listen(), name="sse-reader")
        await eventually(lambda: len(hub.bus) == 1, what="the reading client")
        stalled = await asyncio.to_thread(stalled_client, hub.http_port)  # type: ignore[arg-type]
        try:
            await eventually(lambda: len(hub.bus) == 2, what="the stalled client")
            # 2 KiB events: the stalled socket's buffers fill after a few dozen, then its queue.
            sent = 0
            while hub.bus.dropped == 0 and sent < 5000:
                for _ in range(4):
                    hub.bus.publish(case_event(sent, pad=2048))
                    sent += 1
                await asyncio.sleep(0.02)  # the reading client keeps up
            assert hub.bus.dropped == 1, f"the stalled client was not dropped after {sent} events"
            assert len(hub.bus) == 1
            # The hub aborted the connection although its writes were waiting for the socket.
            got = await asyncio.to_thread(read_until_closed, stalled)
            assert got < sent * 2048
            for n in range(sent, sent + 20):  # and the others keep receiving
                hub.bus.publish(case_event(n, pad=2048))
            await eventually(lambda: len(received) == sent + 20, what="every event at the reading client")
            assert received == [f"c{n}" for n in range(sent + 20)]
            stats = hub.stats()
            assert stats["stream_dropped"] == 1 and stats["stream_listeners"] == 1
            exposed = render(hub.metrics())
            assert "linli_stream_dropped_total 1\n" in exposed and "linli_stream_clients 1\n" in exposed
        finally:
            stalled.close()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
