"""uvicorn's httptools protocol with a deadline for receiving a request's headers.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``, reset by every byte
received, and not armed on a fresh connection), so a client that connects and never finishes its
headers holds a connection forever (slowloris). Here each connection must complete a request's
headers within ``header_timeout`` seconds of its start, and each later request on it within as
long from its first byte; otherwise the connection is closed. A request whose headers arrived is
never timed by this: a long body upload or an SSE stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import TimerHandle
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = ["HeaderDeadlineProtocol", "ServerConfig"]

logger = logging.getLogger("runtrack.http")


class ServerConfig(uvicorn.Config):
    """uvicorn's config, carrying the header deadline to every protocol instance (also into
    ``--workers`` processes, which receive the config pickled)."""

    def __init__(self, app: Any, *, header_timeout: float, **options: Any) -> None:
        super().__init__(app, http=HeaderDeadlineProtocol, **options)
        self.header_timeout = header_timeout


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection that does not complete a request's headers in time."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, ServerConfig):
            raise TypeError("HeaderDeadlineProtocol needs a ServerConfig (its header_timeout)")
        self.header_timeout = config.header_timeout
        self._header_deadline: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # a later request on a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            logger.info(
                "closed a connection from %s that sent no complete request headers within %g s",
                _address(self.client),
                self.header_timeout,
            )
            self.transport.close()


def _address(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown address"
