"""The rule-state flush is asked for once per message, also when one of its events raised.

``Pipeline`` tells the rule runtime that rule state changed (``on_state_change``), which
schedules the flush of the event loop's turn. A message's events share that turn, so asking
once per message is enough; asking once per event was a call per event for nothing (issue 14,
thirteenth pass). What must not be lost: a message whose second event raised still had its
first event change rule state, so the flush is asked for on the way out too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.run import STREAM_START
from hub.app import Hub
from hub.clock import ManualClock
from tests.support.bench_stream import bench_stream


async def test_once_per_message_and_on_the_way_out_of_a_failure(tmp_path: Path) -> None:
    stream, settings = bench_stream(tmp_path, 3, client_id="linli-state-flush")
    hub = Hub(settings=settings, clock=ManualClock(start=STREAM_START))
    try:
        pipeline = hub.pipeline
        asked: list[int] = []
        pipeline._on_state_change = lambda: asked.append(pipeline.stats.events)

        topic, payload = stream[0]  # a Zigbee2MQTT report: a reading, a battery, a link quality
        pipeline.handle(topic, payload)
        assert pipeline.stats.events == 3
        assert asked == [3]

        pipeline.handle("zigbee2mqtt/bridge/state", b'{"state": "online"}')  # no events
        assert asked == [3]

        # The second event fails after the first one went through the rules. (Through the
        # device-event hook, a plain attribute: the compiled build's evaluator cannot be patched.)
        hook = pipeline._on_device_event
        assert hook is not None
        calls: list[Any] = []

        def second_fails(event: Any, retain: bool) -> None:
            calls.append(event)
            if len(calls) == 2:
                raise RuntimeError("a rule failed")
            hook(event, retain)

        pipeline._on_device_event = second_fails
        pipeline._on_event_kinds = None  # every event through the hook, not the signs' kinds only
        topic, payload = stream[1]
        with pytest.raises(RuntimeError, match="a rule failed"):
            pipeline.handle(topic, payload)
        assert asked == [3, 5]  # the first event changed state: the flush is still asked for
    finally:
        hub.close()


async def test_a_report_s_time_is_one_object_in_the_device_state_and_the_rule_slots(tmp_path: Path) -> None:
    # The device state and the rules each boxed the report's time on their own: compiled, a
    # float object per reporting device more (3.3 MB at 100 000; docs/benchmarks.md,
    # "Thirty-eighth pass"). The rules keep the device state's object.
    stream, settings = bench_stream(tmp_path, 3, client_id="linli-one-stamp")
    hub = Hub(settings=settings, clock=ManualClock(start=STREAM_START))
    try:
        topic, payload = stream[0]
        hub.pipeline.handle(topic, payload)
        ((device, state),) = [
            (d.id, s) for d in hub.registry.devices() if (s := hub.states.get(d.id)) is not None
        ]
        stamp = state.values[0]
        state_port = hub.evaluator.state
        slots = [state_port.get(key) for key in state_port.slot_keys() if key[1] == device]
        times = [slot.last_ts for slot in slots if slot is not None and slot.last_ts is not None]
        assert times, "the report touched rule slots"
        assert all(t is stamp for t in times)
    finally:
        hub.close()
