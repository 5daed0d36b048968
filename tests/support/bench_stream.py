"""A small generated community, its bench stream and settings for a hub that is never started.

For tests that run messages through ``Pipeline.handle`` in process, as the benchmarks do
(:mod:`bench.run`): no broker is contacted (the URL is a closed port), the clock is pinned to
the stream by the caller.
"""

from __future__ import annotations

from pathlib import Path

from bench.run import build_messages, hub_settings
from hub.config import Settings
from simulators.community import generate


def bench_stream(
    tmp: Path, messages: int, *, elders_per_building: int = 3, client_id: str = "linli-test-offline"
) -> tuple[list[tuple[str, bytes]], Settings]:
    """(the first ``messages`` of seed 1's stream, settings) for a 2-grid community under ``tmp``."""
    community = generate(
        seed=1, grids=2, buildings_per_grid=2, elders_per_building=elders_per_building, parking_per_grid=2
    )
    community_file = tmp / "community.yaml"
    community.write(community_file)
    stream, _ = build_messages(community.devices, messages, seed=1)
    settings = hub_settings(
        broker_url="mqtt://127.0.0.1:1",
        data_dir=tmp / "data",
        community_file=community_file,
        client_id=client_id,
    )
    return stream, settings
