"""The verbatim device samples (tests/fixtures/samples) and device hints for decoding them."""

from __future__ import annotations

from pathlib import Path

from adapters.events import DeviceKind

SAMPLES = Path(__file__).parents[1] / "fixtures" / "samples"


def sample(family: str, name: str) -> tuple[str, bytes]:
    """(topic, payload) of a sample; the payload is the ``.json`` or bare-text ``.txt`` file."""
    folder = SAMPLES / family
    payload = next(p for p in (folder / f"{name}.json", folder / f"{name}.txt") if p.exists())
    return (folder / f"{name}.topic").read_text().strip(), payload.read_bytes()


class Hints:
    """What the registry would tell a decoder: device kinds and profiles (models)."""

    def __init__(
        self, kinds: dict[str, DeviceKind] | None = None, models: dict[str, str] | None = None
    ) -> None:
        self._kinds = kinds or {}
        self._models = models or {}

    def device_kind(self, device_id: str) -> DeviceKind | None:
        return self._kinds.get(device_id)

    def device_profile(self, device_id: str) -> str | None:
        return self._models.get(device_id)

    def registered_id(self, device_id: str) -> str:
        return device_id
