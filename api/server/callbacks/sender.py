"""One callback attempt: a POST under one deadline, a capped read, an outcome by category.

The recorded error is a category (``ERRORS``), never exception text: raw text tells a closed
port from an open one and may quote the URL, whose userinfo or query can hold credentials.
"""

from __future__ import annotations

import base64
import logging
import ssl
from dataclasses import dataclass

import anyio
import httpcore
import httpx

from api.server.callbacks.addresses import AddressPolicy
from api.server.callbacks.network import GuardedBackend, RefusedAddress, UnresolvableHost
from eventstore import check_callback_url

__all__ = ["ERRORS", "MAX_RESPONSE_BYTES", "CallbackSender", "Outcome"]

logger = logging.getLogger("runtrack.callbacks")
MAX_RESPONSE_BYTES = 64 * 1024
"""How much of a receiver's answer is read; past it the connection is closed."""
IDLE_CONNECTIONS = 16
"""Idle keep-alive connections to receivers kept for reuse, each for at most IDLE_SECONDS."""
IDLE_SECONDS = 5.0

ERRORS = (
    "invalid_url",
    "refused_address",
    "dns_failed",
    "connect_failed",
    "tls_failed",
    "connection_lost",
    "timeout",
    "protocol_error",
    "response_too_large",
    "http_status",
    "internal_error",
)


FINAL_ERRORS = frozenset({"invalid_url", "refused_address"})
"""Errors that a retry would meet again: the attempt that meets one is the last."""


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    give_up: bool = False
    """Retrying cannot help (a refused address, an invalid URL): this attempt is the last."""


@dataclass(frozen=True)
class _Target:
    url: httpcore.URL
    headers: list[tuple[bytes, bytes]]


class CallbackSender:
    """Sends attempts over a connection pool whose network backend guards addresses."""

    def __init__(
        self,
        addresses: AddressPolicy,
        *,
        deadline: float,
        resolvers: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` defaults to httpcore's (certifi's roots, host names checked)."""
        self._backend = GuardedBackend(addresses, resolvers=resolvers)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,  # the dispatcher bounds attempts: no second queue here
            max_keepalive_connections=IDLE_CONNECTIONS,
            keepalive_expiry=IDLE_SECONDS,
            retries=0,
            network_backend=self._backend,
        )
        self._deadline = deadline

    async def aclose(self) -> None:
        await self._pool.aclose()
        self._backend.close()

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            target = _target(url, headers)
        except Exception:  # httpx.InvalidURL is no ValueError: whatever it is, it stays so
            return Outcome(None, "invalid_url", give_up=True)
        try:
            with anyio.fail_after(self._deadline):
                return await self._post(target, body)
        except Exception as exc:  # every failure is an attempt to record, never a crash
            return _failure(exc)

    async def _post(self, target: _Target, body: bytes) -> Outcome:
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), self._deadline)
        async with self._pool.stream(
            b"POST",
            target.url,
            headers=target.headers,
            content=body,
            extensions={"timeout": timeouts},
        ) as response:
            too_large = await _exceeds(response, MAX_RESPONSE_BYTES)
        if not 200 <= response.status < 300:
            return Outcome(response.status, "http_status")
        return Outcome(response.status, "response_too_large" if too_large else None)


async def _exceeds(response: httpcore.Response, limit: int) -> bool:
    """Read the body up to ``limit`` bytes; True if there was more (the rest is never read)."""
    read = 0
    async for chunk in response.aiter_stream():
        read += len(chunk)
        if read > limit:
            return True
    return False


def _target(url: str, extra: dict[str, str]) -> _Target:
    """The request to make; raises if the URL (or a header) cannot be sent."""
    parsed = httpx.URL(check_callback_url(url))
    headers = [(b"Host", parsed.netloc)] + [(k.encode(), v.encode()) for k, v in extra.items()]
    if parsed.username or parsed.password:
        secret = f"{parsed.username}:{parsed.password}".encode()
        headers.append((b"Authorization", b"Basic " + base64.b64encode(secret)))
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return _Target(target, headers)


def _failure(exc: Exception) -> Outcome:
    category = _category(exc)
    if category == "internal_error":
        logger.warning("callback attempt failed unexpectedly: %s", type(exc).__name__)
    return Outcome(None, category, give_up=category in FINAL_ERRORS)


def _category(exc: Exception) -> str:
    found = "internal_error"
    for kind, category in _CATEGORIES:
        if isinstance(exc, kind):
            found = category
            break
    if found == "connect_failed" and isinstance(exc.__cause__ or exc.__context__, ssl.SSLError):
        return "tls_failed"
    return found


_CATEGORIES: tuple[tuple[type[BaseException], str], ...] = (
    (RefusedAddress, "refused_address"),
    (UnresolvableHost, "dns_failed"),
    (TimeoutError, "timeout"),
    (httpcore.TimeoutException, "timeout"),
    (httpcore.ConnectError, "connect_failed"),
    (httpcore.NetworkError, "connection_lost"),
    (httpcore.ProtocolError, "protocol_error"),
    (httpcore.UnsupportedProtocol, "invalid_url"),
    (OSError, "connect_failed"),
)
