"""A client id is not a credential: with an ACL, another user can neither kick the owner of a
client id off nor discard its persistent session while it is away. Found in review: a worker's
login took ``linli-hub`` while the hub restarted, the SOS presses queued for the hub were thrown
away, and the hub was refused for as long as the squatter stayed."""

from __future__ import annotations

import asyncio

from hub.broker import AclRules, EmbeddedBroker
from hub.broker.codec import encode_connect, encode_publish, encode_subscribe


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    mult, length = 1, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if b < 0x80:
            break
    return first, await reader.readexactly(length)


async def _connect(
    port: int, user: str, password: str, client_id: str, *, clean: bool = True
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        encode_connect(client_id, clean_session=clean, username=user, password=password, keepalive=0)
    )
    await writer.drain()
    first, body = await asyncio.wait_for(_read_packet(reader), 5)
    assert first >> 4 == 2
    return reader, writer, body[1]  # the return code


ACL = """
user hub
topic read zigbee2mqtt/#
user sensor
topic write zigbee2mqtt/#
user w1
topic read linli/110105001001/workers/w1/notifications
"""


async def test_another_user_cannot_take_the_hubs_offline_session() -> None:
    acl = AclRules.parse(ACL)
    users = {"hub": "h", "sensor": "s", "w1": "w"}
    async with EmbeddedBroker(users=users, acl=acl) as broker:
        # The hub: persistent session, subscribed, then a restart (offline for a moment).
        r, w, rc = await _connect(broker.port, "hub", "h", "linli-hub", clean=False)
        assert rc == 0
        w.write(encode_subscribe(1, [("zigbee2mqtt/#", 1)]))
        await w.drain()
        await _read_packet(r)  # SUBACK
        w.write(b"\xe0\x00")
        await w.drain()
        w.close()
        await asyncio.sleep(0.2)
        # An SOS press while the hub restarts: queued for its session.
        gr, gw, rc = await _connect(broker.port, "sensor", "s", "gw")
        gw.write(encode_publish("zigbee2mqtt/sos-1", b'{"action":"single"}', qos=1, packet_id=1))
        await gw.drain()
        await _read_packet(gr)  # PUBACK
        assert broker.stats().sessions >= 1
        # A worker's phone credential connects with the hub's client id.
        _, aw, squatted = await _connect(broker.port, "w1", "w", "linli-hub", clean=True)
        aw.close()
        # The hub comes back: its session, with the press queued for it.
        hr, hw, hub_rc = await _connect(broker.port, "hub", "h", "linli-hub", clean=False)
        try:
            first, _ = await asyncio.wait_for(_read_packet(hr), 1)
            got = first >> 4 == 3  # PUBLISH
        except TimeoutError:
            got = False
        for x in (gw, hw):
            x.close()
        assert (squatted, hub_rc, got) == (2, 0, True)  # refused; reconnected; the SOS delivered
