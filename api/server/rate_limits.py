"""Per-key rate limits: token buckets for creating runs and for appending.

Each API key (open mode counts as one key) has a bucket per limit, refilled at ``rate`` tokens a
second up to one second's worth; a request takes one token or is answered 429 with the seconds
until the next token in ``Retry-After``. Buckets live in the server process: with ``--processes N``
(or N servers on one database) a key may go N times as fast, which the documented defaults allow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from api.server.auth import Principal
from api.server.errors import ApiError
from api.server.settings import Settings

__all__ = ["RateLimiter", "RateLimits", "rate_limits"]

Clock = Callable[[], float]
_PRUNE_ABOVE = 4096
"""Buckets kept before the full ones (the same as absent) are dropped."""


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """One token bucket per key; ``take`` spends a token or raises 429."""

    def __init__(self, name: str, rate: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"the {name} rate must be positive; got {rate}")
        self.name = name
        self.rate = rate
        self.burst = max(rate, 1.0)
        self._clock = clock
        self._buckets: dict[tuple[str, str | None], _Bucket] = {}

    def take(self, principal: Principal) -> None:
        now = self._clock()
        bucket = self._bucket((principal.organization_id, principal.key_id), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            raise self._refusal(bucket.tokens)
        bucket.tokens -= 1.0

    def _bucket(self, key: tuple[str, str | None], now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        return bucket

    def _prune(self, now: float) -> None:
        refilled = now - self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if b.updated <= refilled]:
            del self._buckets[key]

    def _refusal(self, tokens: float) -> ApiError:
        wait = max(1, math.ceil((1.0 - tokens) / self.rate))
        return ApiError(
            429,
            "rate_limited",
            f"this key is over its {self.name} rate of {self.rate:g} per second; retry in {wait} s",
            headers={"Retry-After": str(wait)},
            cap=self.name.replace(" ", "_"),
            limit=self.rate,
        )


@dataclass(frozen=True)
class RateLimits:
    """The rate limits of one server process."""

    run_creations: RateLimiter
    appends: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            RateLimiter("run creation", settings.run_create_rate),
            RateLimiter("append", settings.append_rate),
        )


def rate_limits(request: Request) -> RateLimits:
    found: RateLimits = request.app.state.rate_limits
    return found
