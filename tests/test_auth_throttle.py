"""Guessing a token: failed checks are counted per client address and, once used up, every check
from that address waits (429, ``Retry-After``) — the right token too, so a hit cannot be told
from a miss. A real hub over HTTP, and the bucket itself on a clock the test moves."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from hub.app import Hub
from hub.clock import ManualClock
from hub.errors import TooManyAttemptsError
from hub.health.metrics import render
from hub.web.auth_throttle import AuthThrottle, client_address
from tests.helpers import TOKEN, hub_settings
from tests.support.servers import Broker
from tests.test_clock_steps import Monotonic

PRESS = 1_795_371_180.0


def test_a_bucket_empties_after_its_attempts_and_refills_one_per_period() -> None:
    ticks = Monotonic()
    throttle = AuthThrottle(attempts=3, refill_s=30, now=ticks)
    for _ in range(3):
        throttle.check("10.0.0.9")
        throttle.failed("10.0.0.9")
    with pytest.raises(TooManyAttemptsError) as refused:
        throttle.check("10.0.0.9")
    assert refused.value.retry_after_s == pytest.approx(30)
    throttle.check("10.0.0.10")  # another address is not affected
    ticks.value += 29
    with pytest.raises(TooManyAttemptsError) as refused:
        throttle.check("10.0.0.9")
    assert refused.value.retry_after_s == pytest.approx(1)
    ticks.value += 1
    throttle.check("10.0.0.9")  # one more guess …
    throttle.failed("10.0.0.9")
    with pytest.raises(TooManyAttemptsError):  # … and it waits again
        throttle.check("10.0.0.9")
    assert (throttle.failures, throttle.refused) == (4, 3)
    ticks.value += 90
    for _ in range(3):  # full again after attempts × refill_s, not more
        throttle.check("10.0.0.9")
        throttle.failed("10.0.0.9")
    with pytest.raises(TooManyAttemptsError):
        throttle.check("10.0.0.9")


def test_many_addresses_cannot_grow_the_table_past_its_bound() -> None:
    ticks = Monotonic()
    throttle = AuthThrottle(attempts=2, refill_s=10, now=ticks, max_addresses=100)
    throttle.failed("victim-of-guessing")
    throttle.failed("victim-of-guessing")
    for n in range(10_000):
        throttle.failed(f"10.{n // 256}.{n % 256}.1")
        assert len(throttle) <= 100
    ticks.value += 5
    throttle.failed("192.0.2.1")
    assert len(throttle) <= 100


def test_only_a_trusted_proxys_forwarded_for_is_believed() -> None:
    trusted = ("127.0.0.1", "10.1.1.1")
    assert client_address("203.0.113.7", "10.0.0.9", trusted) == "203.0.113.7"  # not a proxy: ignored
    assert client_address("127.0.0.1", "198.51.100.4", trusted) == "198.51.100.4"
    # The client's own claim (left) is not believed; the rightmost untrusted hop is the client.
    assert client_address("127.0.0.1", "1.2.3.4, 198.51.100.4, 10.1.1.1", trusted) == "198.51.100.4"
    assert client_address("127.0.0.1", "10.1.1.1", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"


async def test_a_guesser_waits_and_the_right_token_does_not_tell_it_a_hit(
    tmp_path: Path, embedded_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = hub_settings(
        tmp_path,
        embedded_broker,
        http={"host": "127.0.0.1", "port": 0, "auth_attempts": 5, "trusted_proxies": ["127.0.0.1"]},
    )
    # The hub behind a reverse proxy on this host: the guesser is 203.0.113.9 to it.
    guesser = {"X-Forwarded-For": "203.0.113.9"}
    async with Hub(settings=settings, clock=ManualClock(start=PRESS)) as hub:
        base = f"http://127.0.0.1:{hub.http_port}"
        async with httpx.AsyncClient(base_url=base) as c:
            # A session opened before the guessing keeps working through it.
            login = await c.post("/login", json={"token": TOKEN}, headers=guesser)
            assert login.status_code == 200, login.text
            csrf = login.json()["csrf"]
            with caplog.at_level(logging.WARNING, logger="hub.web.auth_throttle"):
                for n in range(5):
                    if n % 2:
                        r = await c.post("/login", json={"token": f"guess-{n}"}, headers=guesser)
                    else:
                        bearer = {"Authorization": f"Bearer guess-{n}", **guesser}
                        r = await c.get("/api/stats", headers=bearer)
                    assert r.status_code == 401, (n, r.text)
            # Used up: the right token, in either place, gets the same 429 as a guess; so does
            # the guesser's own claim to be someone else, left of what the proxy recorded.
            right = {"Authorization": f"Bearer {TOKEN}"}
            for r in (
                await c.post("/login", json={"token": TOKEN}, headers=guesser),
                await c.post("/login", json={"token": "guess-5"}, headers=guesser),
                await c.get("/api/stats", headers={**right, **guesser}),
                await c.post("/login", data={"token": TOKEN}, headers=guesser),  # the form
                await c.get("/api/stats", headers={**right, "X-Forwarded-For": "1.2.3.4, 203.0.113.9"}),
            ):
                assert r.status_code == 429, r.text
                assert 1 <= int(r.headers["retry-after"]) <= 30
                assert "请" in r.text and TOKEN not in r.text
            cookie_only = await c.get("/api/stats", headers={"X-CSRF-Token": csrf, **guesser})
            assert cookie_only.status_code == 200, "an open session is no token check"
            # Other clients of the proxy, and the proxy's host itself, are other buckets.
            assert (
                await c.get("/api/stats", headers={**right, "X-Forwarded-For": "198.51.100.4"})
            ).status_code == 200
            assert (await c.get("/api/stats", headers=right)).status_code == 200
            # A probe's /readyz with a used-up address is still answered (anonymously).
            r = await c.get("/readyz", headers={"Authorization": "Bearer guess-6", **guesser})
            assert r.status_code in (200, 503) and set(r.json()) == {"status", "failing"}
        metrics = render(hub.metrics()).splitlines()
    assert "linli_http_auth_failures_total 5" in metrics
    assert "linli_http_auth_throttled_total 6" in metrics
    warned = [r for r in caplog.records if "used up" in r.getMessage()]
    assert len(warned) == 1 and "203.0.113.9" in warned[0].getMessage()
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
