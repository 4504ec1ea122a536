"""The network layer under callback deliveries: resolve once, check, connect to that address.

httpcore asks its network backend for a TCP connection to ``(host, port)``. This backend
resolves the host itself, keeps only the addresses the AddressPolicy permits, and connects to
one of those literal addresses, so the address checked is the address connected to (no DNS
rebinding window between a check and a second lookup). TLS is started by httpcore afterwards
with the URL's host name, so SNI and certificate checks are those of the name, not the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import httpcore

from api.server.callbacks.addresses import AddressPolicy

__all__ = ["GuardedBackend", "RefusedAddress", "UnresolvableHost", "lookups_settled"]

Lookup = Future[list[tuple[Any, ...]]]
_started: ContextVar[list[Lookup] | None] = ContextVar("callback_lookups", default=None)


class RefusedAddress(Exception):
    """Every address of the host is non-public and not allowed by the operator."""


class UnresolvableHost(Exception):
    """The host name has no address."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the policy permits.

    Lookups run on a thread pool of their own (``resolvers`` threads), so that slow DNS for
    one receiver cannot take the threads the rest of the server uses.
    """

    def __init__(self, policy: AddressPolicy, *, resolvers: int) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()
        self._executor = ThreadPoolExecutor(resolvers, thread_name_prefix="callback-dns")

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        permitted = [a for a in await self._resolve(host, port) if self._policy.permits_text(a)]
        if not permitted:
            raise RefusedAddress("no permitted address")
        failure: Exception = httpcore.ConnectError("no address")
        for address in permitted:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("callbacks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _resolve(self, host: str, port: int) -> list[str]:
        lookup = self._executor.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        started = _started.get()
        if started is not None:
            started.append(lookup)
        try:
            found = await asyncio.wrap_future(lookup)
        except (socket.gaierror, UnicodeError):
            raise UnresolvableHost("no address") from None
        return list(dict.fromkeys(str(entry[4][0]) for entry in found))


@contextlib.asynccontextmanager
async def lookups_settled() -> AsyncIterator[None]:
    """On exit, wait for the DNS lookups started within to end (unless being cancelled).

    A lookup cannot be interrupted: one that outlives its attempt's deadline keeps its thread.
    Waiting for it here keeps it counted against the attempt's slot (see ``dispatch.py``),
    so one organization's slow DNS cannot take the threads other organizations' lookups need.
    """
    started: list[Lookup] = []
    token = _started.set(started)
    try:
        yield
    finally:
        _started.reset(token)
        await _settle(started)


async def _settle(lookups: list[Lookup]) -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return
    for lookup in lookups:
        if not lookup.done():  # a lookup cancelled before it ran is done
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(lookup)
