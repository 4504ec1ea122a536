"""Revocation that reaches every server and ends the revoked key's open streams.

``runtrack keys revoke`` writes the database directly, and several servers may share one
database, so no server is told about a revocation. Instead each server polls the key-change
counter (one tiny query, a few times a second, see ``KeyRing.version``); when it moves, the
server forgets the keys it verified and ends the open streams of every key that is revoked
now, and of open mode once the database has a key. An ended stream sends the end of its
response: ``EventSource`` reconnects, and the reconnect gets ``401``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from api.server.auth import KeyRing
from api.server.errors import error_response
from eventstore import cancel_and_wait

__all__ = ["KeyWatch", "OpenStreams"]

logger = logging.getLogger("runtrack.keys")
_FAREWELL_SECONDS = 5.0
"""How long the end of an ended stream may take to send (a stalled client gets no more)."""


class OpenStreams:
    """The open streams of each key (``None``: open mode), each under a scope that ends it."""

    def __init__(self) -> None:
        self._scopes: defaultdict[str | None, set[anyio.CancelScope]] = defaultdict(set)
        self._revoked: frozenset[str] = frozenset()
        self._closed = False

    def guard(self, stream: Response, key_id: str | None) -> Response:
        """The stream, ended when its key is revoked (or, in open mode, once a key exists)."""
        return _EndsOnRevocation(self, stream, key_id)

    def count(self, key_id: str | None) -> int:
        return len(self._scopes.get(key_id, ()))

    def end(self, revoked: frozenset[str], *, closed: bool) -> int:
        """End the streams of ``revoked`` keys (and open mode's if ``closed``); how many.

        The sets are kept, so that a stream whose key was verified just before the change and
        that opens just after it is ended as it starts.
        """
        self._revoked, self._closed = revoked, closed
        ended = [
            scope
            for key_id, scopes in self._scopes.items()
            if self._ends(key_id)
            for scope in scopes
        ]
        for scope in ended:
            scope.cancel()
        return len(ended)

    def _ends(self, key_id: str | None) -> bool:
        return self._closed if key_id is None else key_id in self._revoked

    @contextmanager
    def watching(self, key_id: str | None) -> Iterator[anyio.CancelScope]:
        scope = anyio.CancelScope()
        if self._ends(key_id):
            scope.cancel()
        self._scopes[key_id].add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes[key_id].discard(scope)
            if not self._scopes[key_id]:
                del self._scopes[key_id]


class _EndsOnRevocation(Response):
    """Runs a stream response inside its key's scope; once ended, finishes the response."""

    def __init__(self, streams: OpenStreams, stream: Response, key_id: str | None) -> None:
        self._streams = streams
        self._stream = stream
        self._key_id = key_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        with self._streams.watching(self._key_id) as watched:
            await self._stream(scope, receive, noting_start)
        if watched.cancelled_caught:
            logger.info("ended a stream of key %s: the key is no longer valid", self._key_id)
            with anyio.move_on_after(_FAREWELL_SECONDS):
                await self._finish(scope, receive, send, started=started)

    async def _finish(self, scope: Scope, receive: Receive, send: Send, *, started: bool) -> None:
        if started:
            body = b": the API key was revoked\n\n"
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        refused = error_response(401, "unauthorized", "unknown or revoked API key")
        await refused(scope, receive, send)


class KeyWatch:
    """Polls the key-change counter and acts on every move (one task per server process)."""

    def __init__(self, keys: KeyRing, streams: OpenStreams, interval: float) -> None:
        self._keys = keys
        self._streams = streams
        self._interval = interval
        self._version = 0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> KeyWatch:
        self._version = await self._keys.version()
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="key-watch")
        return self

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:
                if not self._failing:
                    logger.warning("cannot read the key-change counter", exc_info=True)
                self._failing = True
            else:
                self._failing = False

    async def check(self) -> None:
        """Act on a change since the last check: read the counter first, so that a change
        made while acting is seen by the next check, and keep it only once acted on, so that a
        check that fails half-way is made again."""
        version = await self._keys.version()
        if version == self._version:
            return
        self._keys.forget()
        revoked = await self._keys.revoked_ids()
        ended = self._streams.end(revoked, closed=await self._keys.ever_keyed())
        self._version = version
        if ended:
            logger.info("keys changed: ended %d open stream(s) of revoked keys", ended)
