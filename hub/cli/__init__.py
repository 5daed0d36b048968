"""``linli``: the command line. The only place that wires the simulators and dashboards into the hub.

Every command that talks to a broker takes ``--mqtt URL`` (``mqtt://user:pass@host:port``,
``mqtts://…`` for TLS). One module per group of commands; this one assembles them.

Owns: the ``linli`` command groups. Must not import: nothing is above it; it is the only
importer of ``simulators`` and ``dashboards``, and it builds the hub through :mod:`hub.app`
and :mod:`hub.demo` rather than wiring stages itself.
"""

from __future__ import annotations

import importlib

import click

from hub.cli.common import LogFormat, configure_logging

#: Every command: its name → (module, attribute), imported when the command is used. So
#: ``linli run`` does not load the Grafana, PostgreSQL-backup and simulator commands' clients
#: (aiohttp, psycopg: ≈ 0.5 s of every start, which counts against kill -9 → ready).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("hub.cli.service", "demo"),
    "run": ("hub.cli.service", "run"),
    "doctor": ("hub.cli.service", "doctor"),
    "token": ("hub.cli.service", "token"),
    "config": ("hub.cli.config", "config"),
    "cluster": ("hub.cli.cluster", "cluster"),
    "backup": ("hub.cli.backup", "backup_command"),
    "restore": ("hub.cli.backup", "restore_command"),
    "community": ("hub.cli.registry", "community"),
    "quarantine": ("hub.cli.registry", "quarantine"),
    "roster": ("hub.cli.registry", "roster"),
    "reply-key": ("hub.cli.security", "reply_key"),
    "rules": ("hub.cli.rules", "rules"),
    "profiles": ("hub.cli.profiles", "profiles"),
    "dashboards": ("hub.cli.dashboards", "dashboards"),
    "simulate": ("hub.cli.simulate", "simulate"),
    "broker": ("hub.cli.security", "broker"),
    "check-mqtt-url": ("hub.cli.service", "check_mqtt_url"),
}


class LazyGroup(click.Group):
    """A group whose commands (:data:`COMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == cmd_name, (cmd_name, command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option(
    "--log-format",
    type=click.Choice([f.value for f in LogFormat]),
    default=LogFormat.TEXT.value,
    show_default=True,
    help="text for a terminal; json: one object per line (time, level, logger, message, case_id …).",
)
def main(verbose: bool, log_format: str) -> None:
    """邻里 Linli — smart-community sensor hub (一键通, doors, parking, grid workers)."""
    configure_logging(verbose, LogFormat(log_format))


__all__ = ["COMMANDS", "main"]


if __name__ == "__main__":  # pragma: no cover
    main()
