"""Prometheus text exposition (format 0.0.4) of the hub's own counters, read at scrape time.

Every number already exists in a stage (pipeline stats, quarantine counts, dispatcher
counters, the MQTT client's reconnects, the time-series writer's stats, open cases); this
module only names and renders them. Counters end in ``_total`` as Prometheus' naming
conventions ask; labels are escaped per the exposition format (backslash, quote, newline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(slots=True)
class Family:
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: list[tuple[Mapping[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        self.samples.append((labels, value))
        return self


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(
                f"{family.name}{{{label_text}}} {value:g}" if label_text else f"{family.name} {value:g}"
            )
    return "\n".join(lines) + "\n"
