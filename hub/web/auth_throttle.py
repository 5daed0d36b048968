"""Failed token checks, counted per client address: guessing a token is slowed to a trickle.

A token is the only secret between the network and every case and elder of the district. The
hub makes its own (``linli token``: 32 random bytes), but an operator may configure any whose
SHA-256 he knows, and a weak one fell to as many guesses a second as the hub answered. Each
client address has a bucket of ``attempts`` failed checks (a ``POST /login`` with a wrong
token, a wrong ``Authorization: Bearer``), refilled one every ``refill_s``. While it is empty
every token check from that address is refused with 429 and ``Retry-After`` (RFC 6585 §4) —
the right token too, else the answer would still tell a guess that hit from one that missed.
Sessions already open are not checks: a console keeps working.

The address is the peer's, or, when the peer is one of ``http.trusted_proxies``, the client
its ``X-Forwarded-For`` names (the rightmost entry no trusted proxy added): behind a reverse
proxy every request comes from the proxy, and counting it would let one guesser lock
everyone out. Nobody else's header is believed.

Bounded: at most ``max_addresses`` buckets; past that the address that failed longest ago is
dropped first, so a guesser spread over many addresses cannot grow memory or make a check slow.

Must not import: ``hub.app``, ``hub.cli``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from hub.errors import TooManyAttemptsError

log = logging.getLogger(__name__)

#: Buckets kept at once (one per address that failed recently).
MAX_ADDRESSES = 10_000


@dataclass(slots=True)
class _Bucket:
    #: Failed checks still allowed, as of ``at`` (fractional while refilling).
    left: float
    at: float


class AuthThrottle:
    """Per client address: ``attempts`` failed token checks, one more every ``refill_s``."""

    def __init__(
        self,
        *,
        attempts: int,
        refill_s: float,
        now: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        if attempts < 1 or refill_s <= 0:
            raise ValueError("attempts must be ≥ 1 and refill_s > 0")
        self._attempts = float(attempts)
        self._refill_s = refill_s
        self._now = now
        self._max = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        #: Checks refused while an address waited (``linli_http_auth_throttled_total``).
        self.refused = 0
        #: Failed checks counted (``linli_http_auth_failures_total``).
        self.failures = 0

    def _level(self, bucket: _Bucket, now: float) -> float:
        return min(self._attempts, bucket.left + max(0.0, now - bucket.at) / self._refill_s)

    def check(self, address: str) -> None:
        """Raise :class:`TooManyAttemptsError` if ``address`` must wait before its next check."""
        bucket = self._buckets.get(address)
        if bucket is None:
            return
        now = self._now()
        level = self._level(bucket, now)
        if level >= 1.0:
            return
        self.refused += 1
        raise TooManyAttemptsError(retry_after_s=max(1.0, (1.0 - level) * self._refill_s))

    def failed(self, address: str) -> None:
        """One failed check from ``address``."""
        self.failures += 1
        now = self._now()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self._max:
                # The address that failed longest ago goes, in O(1): a guesser spread over many
                # addresses must not make each failed check a scan of the table.
                self._buckets.popitem(last=False)
            bucket = self._buckets[address] = _Bucket(self._attempts, now)
        else:
            self._buckets.move_to_end(address)  # in order of last failure
        level = self._level(bucket, now)
        bucket.left = max(0.0, level - 1.0)
        bucket.at = now
        if level >= 1.0 > bucket.left:  # once each time the address runs out, never per guess
            log.warning(
                "%s used up its %d failed token checks: one more every %.0f s (http.auth_attempts)",
                address,
                int(self._attempts),
                self._refill_s,
                extra={"client": address},
            )

    def __len__(self) -> int:
        return len(self._buckets)


def client_address(peer: str, forwarded_for: str | None, trusted: Collection[str]) -> str:
    """The address a request is counted under: ``peer``, or behind a trusted proxy the client
    ``X-Forwarded-For`` names — its rightmost entry that is not itself a trusted proxy (each
    proxy appends the address it received from; entries left of an untrusted one are the
    client's own claims, believed by nobody)."""
    if peer not in trusted or not forwarded_for:
        return peer
    for entry in reversed(forwarded_for.split(",")):
        address = entry.strip()
        if address and address not in trusted:
            return address[:64]
    return peer
