"""``linli``: the command line. The only place that wires the simulators and dashboards into the hub.

Every command that talks to a broker takes ``--mqtt URL`` (``mqtt://user:pass@host:port``,
``mqtts://…`` for TLS). One module per group of commands; this one assembles them.

Owns: the ``linli`` command groups. Must not import: nothing is above it; it is the only
importer of ``simulators`` and ``dashboards``, and it builds the hub through :mod:`hub.app`
and :mod:`hub.demo` rather than wiring stages itself.
"""

from __future__ import annotations

import click

from hub.cli.common import configure_logging
from hub.cli.dashboards import dashboards
from hub.cli.registry import community, quarantine, roster
from hub.cli.rules import rules
from hub.cli.security import broker, reply_key
from hub.cli.service import check_mqtt_url, demo, doctor, run, token
from hub.cli.simulate import simulate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """邻里 Linli — smart-community sensor hub (一键通, doors, parking, grid workers)."""
    configure_logging(verbose)


for command in (
    demo,
    run,
    doctor,
    token,
    community,
    quarantine,
    roster,
    reply_key,
    rules,
    dashboards,
    simulate,
    broker,
    check_mqtt_url,
):
    main.add_command(command)

__all__ = ["main"]


if __name__ == "__main__":  # pragma: no cover
    main()
