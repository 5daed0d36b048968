"""Write the last fault run's rows (JSON lines from ``FAULTS_REPORT``) into docs/reliability.md.

``make faults`` runs the long variants with ``FAULTS_REPORT`` set, then this; the table goes
between the ``faults:begin`` and ``faults:end`` markers, with the command and the date.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
HEADER = (
    "| Scenario | SOS presses in | Alerts | Cases | Duplicates | Lost | Dispatches received | Recover (s) | Ready false during fault / true after | Notes |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
)


def table(rows: list[dict[str, object]]) -> str:
    lines = [HEADER]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['presses']} | {r['alerts']} | {r['cases']} | {r['duplicates']} | {r['lost']} |"
            f" {r['notifications']} | {float(r['recover_s']):.1f} | {r.get('ready', '')} | {r['note']} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def main(report: Path, doc: Path, command: str) -> None:
    rows = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line.strip()]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"{BEGIN}\nLast run: `{command}` on {when} ({platform.node() or 'host'}, {platform.machine()},"
        f" Python {platform.python_version()}); {len(rows)} scenarios.\n\n{table(rows)}\n{END}"
    )
    text = doc.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(head + block + tail, encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), " ".join(sys.argv[3:]) or "make faults")
