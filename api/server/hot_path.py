"""The hottest routes without Starlette's per-request layers, answering exactly as through them.

A request through the full stack passes ServerErrorMiddleware, ExceptionMiddleware, the
router's scan of every route and the route's own exception wrapper, each wrapping ``send``
once more; for a single-event append that is a good part of the request's cost. A hot route
is matched here by its own ``Route`` (same pattern, converters and methods) and its endpoint
is run with the app's exception handlers, chosen and applied as those two middlewares do
(handled errors answered by their handler, anything else by the 500 handler and re-raised),
so its answers, errors included, are those of the full stack. With middleware of the app's
own (``--metrics-listen``) there is no hot path: every request goes through that middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

__all__ = ["HotPath"]

Handler = Callable[[Request, Exception], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class HotPath:
    """Dispatch for ``routes``: ``match`` finds one for a request scope, ``serve`` answers it."""

    def __init__(self, routes: Sequence[Route], handlers: Mapping[Any, Handler]) -> None:
        self._routes = tuple(routes)
        self._handled = {k: h for k, h in handlers.items() if k not in (500, Exception)}
        self._internal = handlers.get(Exception) or handlers.get(500)
        if self._internal is None or any(isinstance(k, int) for k in self._handled):
            raise ValueError("the hot path needs an Exception handler and no status handlers")

    def match(self, scope: Scope) -> Endpoint | None:
        """The endpoint of the hot route ``scope`` fully matches, its path params put in."""
        for route in self._routes:
            found, child = route.matches(scope)
            if found is Match.FULL:
                scope.update(child)
                endpoint: Endpoint = route.endpoint
                return endpoint
        return None

    async def serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
            await response(scope, receive, sending)
        except Exception as exc:
            await self._failed(request, exc, started, sending)

    async def _failed(self, request: Request, exc: Exception, started: bool, send: Send) -> None:
        handler = self._handler(exc)
        if handler is None:  # ServerErrorMiddleware: the 500 handler, then re-raise
            assert self._internal is not None
            answer = await self._internal(Request(request.scope), exc)
            if not started:
                await answer(request.scope, request.receive, send)
            raise exc
        if started:  # ExceptionMiddleware refuses the same
            raise RuntimeError("Caught handled exception, but response already started.") from exc
        answer = await handler(request, exc)
        await answer(request.scope, request.receive, send)
        exc.__traceback__ = None  # reused exception instances would pile up tracebacks

    def _handler(self, exc: Exception) -> Handler | None:
        for kind in type(exc).__mro__:
            if kind in self._handled:
                return self._handled[kind]
        return None
