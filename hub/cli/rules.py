"""``rules check``, ``rules test``, ``rules reload``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import click

from adapters.errors import LinliError
from hub.config import load_settings
from rules.evaluator import Evaluator
from rules.loader import BUILTIN_PACKS, load_packs
from rules.state import MemoryState
from rules.testing import BUILTIN_RULE_TESTS, run_rule_tests
from rules.testing import summary as rule_test_summary


@click.group()
def rules() -> None:
    """Rule packs: validate them, run their YAML unit tests, reload a running hub."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Also check the overrides of this hub configuration (and use its rule_paths).",
)
def rules_check(paths: tuple[Path, ...], config_file: Path | None) -> None:
    """Validate rule packs (default: the shipped packs); errors name file, rule and field."""
    try:
        settings = load_settings(config_file) if config_file else None
        chosen = paths or (settings.rule_paths if settings and settings.rule_paths else (BUILTIN_PACKS,))
        loaded = load_packs(chosen)
        # Building an evaluator validates the overrides against the triggers they change.
        Evaluator(
            rules=loaded,
            state=MemoryState(),
            zone=settings.timezone if settings else "Asia/Shanghai",
            overrides=settings.rule_overrides if settings else None,
        )
    except LinliError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"ok: {len(loaded)} rules in {', '.join(map(str, chosen))}")


@rules.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def rules_test(paths: tuple[Path, ...]) -> None:
    """Run YAML rule tests (given events at times → expected alerts and clears), like promtool test rules.

    Directories are searched recursively; pack files in them are skipped and reported.
    Default: the tests shipped for the shipped packs.
    """
    skipped: list[Path] = []
    results = run_rule_tests(paths or (BUILTIN_RULE_TESTS,), skipped=skipped)
    if skipped:
        click.echo(
            f"skipped {len(skipped)} rule pack file(s): pack files are not test files (tests: rules/tests)"
        )
    for result in results:
        if not result.passed:
            click.echo(f"FAIL {result.file} {result.name}\n{result.diff}")
    counts = rule_test_summary(results)
    click.echo(f"{counts['passed']} passed, {counts['failed']} failed")
    if counts["failed"] or not results:
        raise SystemExit(1)


@rules.command("reload")
@click.option(
    "--url", default="http://127.0.0.1:8080", show_default=True, help="The running hub's HTTP address."
)
@click.option(
    "--token",
    required=True,
    envvar="LINLI_API_TOKEN",
    help="An admin or command-centre token (or LINLI_API_TOKEN).",
)
def rules_reload(url: str, token: str) -> None:
    """Ask a running hub to reload its rule packs now (state of unchanged rules is kept)."""

    async def ask() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
            session.post(f"{url.rstrip('/')}/api/rules/reload") as response,
        ):
            return response.status, await response.text()

    try:
        status, text = asyncio.run(ask())
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    if status != 200:
        raise click.ClickException(f"reload refused ({status}): {text}")
    click.echo(text)
