"""Server settings: one frozen record, filled from the command line or the environment."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache

__all__ = ["Settings", "is_loopback"]


@dataclass(frozen=True)
class Settings:
    database: str = "runtrack.db"
    host: str = "127.0.0.1"
    port: int = 8000
    heartbeat_seconds: float = 15.0
    """Idle interval after which a stream gets a ``: heartbeat`` comment."""
    retry_ms: int = 3000
    """The ``retry:`` a browser waits before reconnecting."""
    max_streams: int = 10_000
    """Open SSE streams allowed at once; past it, 503 with Retry-After."""
    send_timeout: float = 30.0
    """A client that does not take a write within this many seconds is dropped."""
    max_body_bytes: int = 1_048_576
    """The largest request body; past it, 413. Advertised in ``/openapi.json``."""
    key_cache_seconds: float = 30.0
    """How long a verified API key is trusted before it is looked up again (revocation delay)."""
    synchronous: str = "FULL"
    fanout_linger_ms: float = 50.0
    """Under load, streams are woken at most once per this many ms (see eventstore/tail.py)."""
    fanout_budget: int = 12_000
    """Stream wake-ups per second before the fan-out window grows past ``fanout_linger_ms``
    (with many thousand streams); 0 turns the growth off."""
    leader_interval: float = 1.0
    """How often a follower tries to become the leader that runs background services."""
    reconcile_seconds: float = 30.0
    heartbeat_timeout: float = 300.0
    queue_timeout: float = 3600.0
    cancel_timeout: float = 180.0
    callback_secret: str | None = None
    callback_max_attempts: int = 8
    callback_retry_base: float = 1.0
    """Seconds before the second attempt; doubles each time (with jitter), capped at 5 min."""
    callback_poll_seconds: float = 1.0
    workers: int = 1
    """Server processes sharing the port (PostgreSQL only): each has its own event loop and
    live tail, so streams and requests spread over several cores."""
    access_log: bool = False
    """One log line per request. Off by default: at thousands of requests a second the line
    costs about a twentieth of the server's CPU (see docs/operations.md)."""
    demo: bool = False
    """Also run simulated agents (``api/demo.py``)."""
    demo_pace: float = 1.0
    """Scales the demo's pauses (tests run it fast)."""

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@cache
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
