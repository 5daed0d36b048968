"""What the hub loads at start-up: clients it may not use stay out (docs/benchmarks.md, restart).

A hub on SQLite (the default) without InfluxDB or webhooks never uses psycopg or aiohttp, and
neither does ``linli run`` need the Grafana, backup or simulator commands; loading them took
≈ 0.5 s of every start, which counts against ``kill -9`` → ready. A module-level import added
anywhere on the way brings that back unnoticed: this test notices. (Where they are used they
are imported there: the InfluxDB, webhook, cluster and backup tests run those paths.)
"""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from hub.cli import COMMANDS, main

LAZY = ("psycopg", "aiohttp")


def loaded_after(statement: str) -> list[str]:
    probe = f"import sys\n{statement}\nprint(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.split()


def test_the_hub_and_its_run_command_leave_unused_clients_unloaded() -> None:
    assert loaded_after("import hub.app") == []
    assert loaded_after("from hub.cli import main; main.get_command(None, 'run')") == []


def test_every_command_is_listed_and_loads_under_its_name() -> None:
    assert sorted(COMMANDS) == main.list_commands(None)  # type: ignore[arg-type]
    for name in COMMANDS:
        command = main.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name
    assert main.get_command(None, "no-such-command") is None  # type: ignore[arg-type]
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2 and "No such command" in result.output
