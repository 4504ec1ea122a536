"""uvicorn's httptools protocol, holding each connection to the limits of ``ConnectionLimits``.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``, reset by every byte
received, and not armed on a fresh connection), and neither httptools nor uvicorn bounds the
size of a request's head. Here:

- a connection must complete a request's headers within ``header_timeout`` seconds of its start,
  and each later request on it within as long from the first byte after the previous request
  (slowloris, also by empty lines between requests);
- a request's head is at most ``max_header_bytes`` (request URL and header fields) and
  ``max_headers`` fields: past either, ``431`` (``414`` for the URL alone) and the connection
  is closed (after a short linger), before more of it is buffered;
- a request's body must have arrived within ``body_timeout`` seconds of its headers, also when
  the answer was sent before the body was read (a ``401``): otherwise the connection is closed.

A request without a body (an SSE stream) is timed by none of this once its headers are in.

The class overrides uvicorn internals (``connection_made``, ``connection_lost``,
``data_received``, ``send_400_response`` and the parser callbacks), which is why pyproject.toml
bounds uvicorn's version; tests/security/test_connections.py fails if they stop being called.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import TimerHandle
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from api.server.transport.limits import ConnectionLimits, HeadMeter, HeadRefused

__all__ = ["ConnectionLimits", "LimitedHttpProtocol", "ServerConfig"]

logger = logging.getLogger("runtrack.http")

LINGER_SECONDS = 2.0
"""After a refusal the server stops sending but reads (and drops) what the client still sends
for up to this long before it closes: closing at once, with the rest of a large head unread,
resets the connection, and the client may lose the answer before it reads it."""


class ServerConfig(uvicorn.Config):
    """uvicorn's config, carrying the connection limits to every protocol instance (also into
    ``--processes`` children, which receive the config pickled)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, http=LimitedHttpProtocol, **options)
        self.limits = limits


class LimitedHttpProtocol(HttpToolsProtocol):
    """Closes a connection whose request head is too slow or too large, or body too slow."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, ServerConfig):
            raise TypeError("LimitedHttpProtocol needs a ServerConfig (its limits)")
        self.limits = config.limits
        self._meter = HeadMeter(self.limits.max_header_bytes, self.limits.max_headers)
        self._refusal: HeadRefused | None = None
        self._in_body = False
        self._boundary_in_feed = False  # a head or a whole request ended in this data
        self._head_deadline: TimerHandle | None = None
        self._body_deadline: TimerHandle | None = None
        self._linger: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadlines()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # lingering after a refusal: what the client still sends is dropped
        self._boundary_in_feed = False
        if not self._in_body and self._head_deadline is None:
            self._arm_head_deadline()  # bytes between requests (even bare CRLFs) start a head
        super().data_received(data)  # a HeadRefused from a callback reaches send_400_response
        if self._refusal is None and not (self._in_body or self._boundary_in_feed):
            self._count_unparsed(len(data))

    def _count_unparsed(self, size: int) -> None:
        try:
            self._meter.add_received(size)
        except HeadRefused as refusal:
            self._refuse(refusal)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(self._refusal)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._meter.reset()
        if self._head_deadline is None:  # a later request on a kept-alive connection
            self._arm_head_deadline()

    def on_url(self, url: bytes) -> None:
        self._metered(self._meter.add_url, url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._metered(self._meter.add_field, name, value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        self._in_body = self._boundary_in_feed = True
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._body_deadline = self.loop.call_later(
                self.limits.body_timeout, self._body_too_late
            )

    def on_message_complete(self) -> None:
        self._disarm_body_deadline()
        self._in_body, self._boundary_in_feed = False, True
        super().on_message_complete()

    def _metered(self, count: Callable[..., None], *args: Any) -> None:
        """Count inside a parser callback: a refusal stops the parser, and uvicorn's answer to
        a parser error (``send_400_response``) sends it instead."""
        try:
            count(*args)
        except HeadRefused as refusal:
            self._refusal = refusal
            raise

    def _refuse(self, refusal: HeadRefused) -> None:
        self._refusal = refusal
        self._disarm_deadlines()
        logger.info("refused a request head from %s: %s", _address(self.client), refusal.reason)
        if self.transport.is_closing():
            return
        self.transport.write(_plain_response(refusal.status, refusal.reason))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _arm_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(
            self.limits.header_timeout, self._headers_too_late
        )

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _disarm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _disarm_deadlines(self) -> None:
        self._disarm_head_deadline()
        self._disarm_body_deadline()

    def _headers_too_late(self) -> None:
        self._head_deadline = None
        self._close("sent no complete request headers within", self.limits.header_timeout)

    def _body_too_late(self) -> None:
        self._body_deadline = None
        self._close("sent no complete request body within", self.limits.body_timeout)

    def _close(self, what: str, seconds: float) -> None:
        if not self.transport.is_closing():
            client = _address(self.client)
            logger.info("closed a connection from %s that %s %g s", client, what, seconds)
            self.transport.close()


def _plain_response(status: int, reason: str) -> bytes:
    body = reason.encode("ascii")
    head = (
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return STATUS_LINE[status] + head + body


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
