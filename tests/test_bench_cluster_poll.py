"""The multiprocess section's measured time ends within a fine read of the stream's last message
(``bench.cluster_nodes.run_size``, nodes and publisher faked: never a speed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import bench.cluster_nodes as cn
from bench.publisher import PublishResult


def test_the_end_of_a_stream_the_nodes_kept_pace_with_is_read_finely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nodes keep pace with the publisher and take the last message 30 ms after the broker
    read the stream's last byte. The measured time ends within a fine read of that. Found in
    review: the first read after ``blast`` was a coarse one whatever the nodes had taken, and
    ended the time ≈ 0.25 s late, the bias the fine reads are there to remove."""
    count = 200_000
    lag = 0.03
    state: dict[str, float] = {}

    def blast(**_: Any) -> PublishResult:
        start = time.perf_counter()
        time.sleep(0.2)  # the stream goes out; the nodes take it as it comes
        end = time.perf_counter()
        state["start"], state["all_taken"] = start, end + lag
        return PublishResult(count, 1, end - start, count / (end - start), start, end)

    def counters(_node: Any) -> dict[str, int]:
        done = state.get("all_taken")
        messages = 0 if done is None else count if time.perf_counter() >= done else int(count * 0.97)
        return dict(messages=messages, signals=0, alerts_raised=0, handler_errors=0, quarantined=0)

    snap = cn.CpuSnapshot(nodes=[0.0], broker=0.0, postgres={}, bench=0.0, machine=(0.0, 1.0))
    monkeypatch.setattr(cn, "node_config", lambda **_: tmp_path / "n.yaml")
    monkeypatch.setattr(cn, "start_nodes", lambda *_a, **_k: [cn.Node("n", None, tmp_path / "log")])  # type: ignore[arg-type]
    monkeypatch.setattr(cn, "stop_nodes", lambda _nodes: None)
    monkeypatch.setattr(cn, "wait_balanced", lambda *_a, **_k: {})
    monkeypatch.setattr(cn, "wait_subscribed", lambda *_a, **_k: None)
    monkeypatch.setattr(cn, "counters", counters)
    monkeypatch.setattr(cn.CpuSnapshot, "take", classmethod(lambda cls, *_a: snap))
    monkeypatch.setattr(cn, "settled_outcome", lambda *_a, **_k: {})
    monkeypatch.setattr(cn, "blast", blast)
    result = cn.run_size(
        1,
        work=tmp_path,
        broker=cn.BrokerAccess(url="mqtt://x", host="x", port=1, username="u", password="p"),
        store_url="postgresql://x",
        pg_pid=None,
        district=tmp_path / "d.yaml",
        roots=["r"],
        payload=b"",
        count=count,
        clock_start=None,
    )
    true_seconds = state["all_taken"] - state["start"]
    late = result["seconds"] - true_seconds
    assert late < 2 * cn.FINE_POLL_S, f"measured {late * 1000:.0f} ms late (true {true_seconds:.3f} s)"
