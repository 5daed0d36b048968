"""The MQTT boundary's credentials: ``reply-key`` (workers' reply keys) and ``broker config``."""

from __future__ import annotations

from pathlib import Path

import click

from adapters.errors import LinliError
from hub.casework.reply_keys import FILE_NAME, ReplyKeys
from hub.cli.common import store_for, with_store_options
from hub.config import load_settings


def _keys(config_file: Path | None, data_dir: Path | None) -> ReplyKeys:
    """The keys file a command works on: ``replies.keys_file`` of the config, or in ``--data-dir``."""
    if data_dir is not None:
        return ReplyKeys(path=Path(data_dir) / FILE_NAME)
    try:
        return ReplyKeys(path=load_settings(config_file).reply_keys_file)
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None


def _roster_ids(config_file: Path | None, data_dir: Path | None) -> set[str]:
    store = store_for(config_file, data_dir)
    try:
        return {person.id for community in store.communities() for person in community.people}
    finally:
        store.close()


@click.group("reply-key")
def reply_key() -> None:
    """Reply keys: the secret each person's app signs MQTT replies with (docs/topics.md)."""


@reply_key.command("issue")
@click.option("--person", required=True, help="Roster person id (e.g. g1-day).")
@with_store_options
def reply_key_issue(person: str, config_file: Path | None, data_dir: Path | None) -> None:
    """Issue or rotate PERSON's key; prints it once. The old key stops working at once."""
    if person not in _roster_ids(config_file, data_dir):
        raise click.ClickException(f"{person!r} is in no roster (import the community first)")
    keys = _keys(config_file, data_dir)
    value = keys.issue(person)
    click.echo(f"reply key of {person} (give it to their app only; shown once): {value}")
    click.echo(f"stored in {keys.path} (0600); a running hub uses it at once")


@reply_key.command("revoke")
@click.option("--person", required=True, help="Roster person id.")
@with_store_options
def reply_key_revoke(person: str, config_file: Path | None, data_dir: Path | None) -> None:
    """Remove PERSON's key: their replies are refused from now on (a lost phone)."""
    keys = _keys(config_file, data_dir)
    if not keys.revoke(person):
        raise click.ClickException(f"{person!r} has no reply key")
    click.echo(f"reply key of {person} revoked")


@reply_key.command("list")
@with_store_options
def reply_key_list(config_file: Path | None, data_dir: Path | None) -> None:
    """Who has a key, and who in the roster has none (their replies are refused)."""
    keys = _keys(config_file, data_dir)
    holders = set(keys.people())
    for person in sorted(_roster_ids(config_file, data_dir) | holders):
        click.echo(f"{person}\t{'key issued' if person in holders else 'NO KEY'}")
