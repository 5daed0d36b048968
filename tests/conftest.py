"""Shared fixtures: real brokers and databases on random loopback ports, a hub wired to them."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# `make unit-compiled`: Linli's packages from the compiled build's tree (bench/compiled.py,
# hub/ingest/hot_path.py), so these tests run the extensions, not the checkout. PYTHONPATH alone loses:
# pytest puts the rootdir (this checkout) first on the path to import this conftest and each test
# module. So the packages are imported here, with the tree first: their submodules are then found
# through each package's ``__path__``, in the tree, whatever the path says later.
if _TREE := os.environ.get("LINLI_DEV_COMPILED_TREE"):
    sys.path.insert(0, _TREE)
    import adapters
    import dashboards
    import hub
    import linli
    import rules
    import simulators

    sys.path.remove(_TREE)
    for _package in (adapters, dashboards, hub, linli, rules, simulators):
        if not str(_package.__file__).startswith(_TREE):
            raise RuntimeError(
                f"LINLI_DEV_COMPILED_TREE: {_package.__name__} was imported from {_package.__file__}"
            )

import psycopg
import pytest

from hub.broker import EmbeddedBroker
from tests.support.servers import Broker, Postgres, ServerMissingError, mosquitto, postgres

IN_CI = bool(os.environ.get("CI"))
#: `make unit-compiled`: the run is on the compiled build (tests/test_hot_path.py checks it is).
COMPILED = os.environ.get("LINLI_DEV_EXPECT_COMPILED") == "1"


def server_missing(reason: str) -> None:
    """Skip locally, fail in CI: a CI run must never pass by not running server tests."""
    if IN_CI:
        pytest.fail(f"required server missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def mosquitto_broker(tmp_path: Path) -> Iterator[Broker]:
    try:
        with mosquitto(tmp_path / "mosquitto") as broker:
            yield broker
    except ServerMissingError as exc:
        server_missing(str(exc))


@pytest.fixture
async def embedded_broker() -> AsyncIterator[Broker]:
    """The embedded broker, exposed with the same shape as the Mosquitto fixture."""
    broker = EmbeddedBroker(host="127.0.0.1", port=0, users={"linli": "test-secret"})
    await broker.start()
    try:
        yield Broker("127.0.0.1", broker.port, "linli", "test-secret")
    finally:
        await broker.stop()


#: The store engines every store-level test runs against.
STORE_ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL 15 cluster for the session; each test gets its own database in it."""
    try:
        with postgres(fsync=False) as server:
            yield server
    except ServerMissingError as exc:
        server_missing(str(exc))


_databases = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: Postgres) -> Iterator[str]:
    """A fresh, empty database: ``postgresql://postgres@127.0.0.1:PORT/t_N``."""
    name = f"t_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=STORE_ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each engine: a SQLite file in tmp_path, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests against a real PostgreSQL are left out of the faketime run (``-m "not real_clock"``).

    Under libfaketime a lock-wait test against the preloaded server hung in CI's second run
    (a connection "idle in transaction" and one "SELECT waiting" for minutes, where
    ``lock_timeout`` frees it in 200 ms with the real clock). The same tests run in the
    ordinary run; what the faketime run checks — no test depends on today's date — does not
    need a database server's timers.
    """
    for item in items:
        if COMPILED and (marker := item.get_closest_marker("pure_only")) is not None:
            # Compiled classes cannot be patched, and mypyc checks annotations where a value
            # enters typed code: what such a test does is impossible there, not broken.
            item.add_marker(pytest.mark.skip(reason=f"pure build only: {marker.args[0]}"))
        params = getattr(getattr(item, "callspec", None), "params", {})
        fixtures = getattr(item, "fixturenames", ())
        if (
            "postgres_server" in fixtures
            or "postgres_url" in fixtures
            or params.get("store_url") == "postgresql"
        ):
            item.add_marker(pytest.mark.real_clock)
