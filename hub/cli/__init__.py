"""``linli``: the command line. The only place that wires the simulators and dashboards into the hub.

Every command that talks to a broker takes ``--mqtt URL`` (``mqtt://user:pass@host:port``,
``mqtts://…`` for TLS). One module per group of commands; this one assembles them.

Owns: the ``linli`` command groups. Must not import: nothing is above it; it is the only
importer of ``simulators`` and ``dashboards``, and it builds the hub through :mod:`hub.app`
and :mod:`hub.demo` rather than wiring stages itself.
"""

from __future__ import annotations

import click

from hub.cli.backup import backup_command, restore_command
from hub.cli.cluster import cluster
from hub.cli.common import LogFormat, configure_logging
from hub.cli.config import config
from hub.cli.dashboards import dashboards
from hub.cli.profiles import profiles
from hub.cli.registry import community, quarantine, roster
from hub.cli.rules import rules
from hub.cli.security import broker, reply_key
from hub.cli.service import check_mqtt_url, demo, doctor, run, token
from hub.cli.simulate import simulate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (
    demo,
    run,
    doctor,
    token,
    config,
    cluster,
    backup_command,
    restore_command,
    community,
    quarantine,
    roster,
    reply_key,
    rules,
    profiles,
    dashboards,
    simulate,
    broker,
    check_mqtt_url,
):
    main.add_command(command)

__all__ = ["main"]


if __name__ == "__main__":  # pragma: no cover
    main()
