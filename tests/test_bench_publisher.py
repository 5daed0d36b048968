"""The bench's raw publisher against a real Mosquitto: QoS 0 and QoS 1 streams, every PUBACK counted."""

from __future__ import annotations

import pytest

from bench.publisher import blast, encode_stream
from tests.support.servers import Broker


@pytest.mark.parametrize("qos", [0, 1])
def test_stream_is_taken_in_whole_and_acknowledged_at_qos_1(mosquitto_broker: Broker, qos: int) -> None:
    # 70 000 messages: the packet identifiers wrap past 65 535 (never 0).
    messages = [(f"bench/x/{i % 7}", b'{"n":%d}' % i) for i in range(70_000)]
    stream = encode_stream(messages, qos=qos)
    result = blast(
        host=mosquitto_broker.host,
        port=mosquitto_broker.port,
        username=mosquitto_broker.username,
        password=mosquitto_broker.password,
        stream=stream,
        messages=len(messages),
    )
    assert result.bytes_sent == len(stream)
    assert result.pubacks == (len(messages) if qos == 1 else 0)


def test_qos_1_packet_identifiers_wrap_and_are_never_zero() -> None:
    stream = encode_stream([("t", b"")] * 65_536, qos=1)
    # Each packet: 0x32, remaining length 5, topic length 1, "t", identifier (2 bytes).
    ids = [int.from_bytes(stream[i + 5 : i + 7], "big") for i in range(0, len(stream), 7)]
    assert ids[0] == 1 and ids[65_534] == 65_535 and ids[65_535] == 1
    assert 0 not in ids
    with pytest.raises(ValueError, match="QoS 0 or 1"):
        encode_stream([("t", b"")], qos=2)
