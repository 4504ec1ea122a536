"""The token bucket behind the per-key rate limits, on a clock the test moves."""

from __future__ import annotations

import pytest

from api.server.auth import Principal, Role
from api.server.errors import ApiError
from api.server.rate_limits import RateLimiter

ALICE = Principal("org-a", Role.USER, "alice")
BOB = Principal("org-a", Role.USER, "bob")
OPEN_MODE = Principal("default", Role.ADMIN, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refused(limiter: RateLimiter, principal: Principal) -> ApiError:
    with pytest.raises(ApiError) as caught:
        limiter.take(principal)
    return caught.value


def test_a_key_bursts_one_second_worth_then_waits_for_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter("append", 4, clock)
    for _ in range(4):
        limiter.take(ALICE)
    error = refused(limiter, ALICE)
    assert (error.status, error.code, error.headers) == (429, "rate_limited", {"Retry-After": "1"})
    clock.now += 0.25  # one token back
    limiter.take(ALICE)
    refused(limiter, ALICE)


def test_keys_have_their_own_buckets_and_open_mode_is_one_key() -> None:
    limiter = RateLimiter("run creation", 1, Clock())
    limiter.take(ALICE)
    limiter.take(BOB)
    limiter.take(OPEN_MODE)
    for principal in (ALICE, BOB, OPEN_MODE):
        refused(limiter, principal)


def test_retry_after_counts_the_seconds_to_the_next_token() -> None:
    limiter = RateLimiter("run creation", 0.1, Clock())
    limiter.take(ALICE)
    assert refused(limiter, ALICE).headers == {"Retry-After": "10"}


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter("append", 0)
