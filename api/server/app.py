"""The Starlette app factory: routes, error shapes, and the store's life cycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from api.server.auth import DEFAULT_ORGANIZATION, KeyRing, Role
from api.server.demo import Demo, demo_routes
from api.server.errors import ApiError, error_response, handle_api_error, handle_store_error
from api.server.hot_path import HotPath
from api.server.metrics import Metrics
from api.server.metrics_access import MetricsSocket
from api.server.rate_limits import RateLimits
from api.server.revocation import KeyWatch, OpenStreams
from api.server.routes import ops, runs, streams
from api.server.run_metrics import RunObservations
from api.server.services import Services
from api.server.settings import Settings, demo_callback_url
from api.server.sse import RAW_SEND, QuietDrops, StreamGate
from eventstore import (
    ArchiveReader,
    EventStore,
    HeadSigner,
    PublicKeys,
    StoreError,
    load_public_key,
    open_store,
)
from projections import RunCommands, RunProjection, RunQueries, rebuild

__all__ = ["create_app", "trusted_keys"]

logger = logging.getLogger("runtrack")


class _App(Starlette):
    """Starlette, keeping the server's own ``send`` for SSE streams (``sse.RAW_SEND``), with
    the hot routes dispatched past its layers (``hot_path.py``)."""

    hot_routes: tuple[Route, ...] = tuple(runs.hot_routes)
    hot_path: HotPath | None = None
    _hot_path_made = False
    """The hot path is made at the first request, when the app's middleware is known."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        RAW_SEND.set(send)  # the request's own task: the value ends with it
        if scope["type"] == "http":
            if _has_nul(scope):
                refusal = error_response(
                    400, "invalid_parameter", "the path and query may not contain NUL (%00)"
                )
                await refusal(scope, receive, send)
                return
            if not self._hot_path_made:
                self.hot_path, self._hot_path_made = self._hot_path(), True
            if self.hot_path is not None and (endpoint := self.hot_path.match(scope)):
                scope["app"] = self
                await self.hot_path.serve(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _hot_path(self) -> HotPath | None:
        """None when the app has middleware of its own, which every request must pass."""
        if self.user_middleware or self.max_body_size is not None or not self.hot_routes:
            return None
        return HotPath(self.hot_routes, self.exception_handlers)


def _has_nul(scope: Scope) -> bool:
    """NUL is no part of any id or filter, and PostgreSQL cannot hold it in text: refused once,
    here, for every route alike."""
    return "\x00" in scope["path"] or b"%00" in scope["query_string"]


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    extra = demo_routes() if settings.demo else []
    app = _App(
        routes=[*runs.routes, *streams.routes, *ops.routes, *extra],
        lifespan=_lifespan,
        exception_handlers={
            StoreError: handle_store_error,
            ApiError: handle_api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            Exception: _internal_error,
        },
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.streams = StreamGate(
        settings.max_streams,
        app.state.metrics,
        settings.send_timeout,
        per_organization=settings.max_streams_per_organization,
        per_key=settings.max_streams_per_key,
    )
    app.state.rate_limits = RateLimits.from_settings(settings)
    if settings.metrics_address is not None:
        app.add_middleware(MetricsSocket, port=settings.metrics_address[1])
    app.state.open_streams = OpenStreams()
    app.state.signer = (
        None if settings.signing_key is None else HeadSigner.from_file(settings.signing_key)
    )
    app.state.trusted_keys = trusted_keys(settings, app.state.signer)
    return app


def _archive_reader(settings: Settings) -> ArchiveReader | None:
    """Archived runs' events are read from ``--archive-dir`` when this server has one."""
    return None if settings.archive_dir is None else ArchiveReader(Path(settings.archive_dir))


def trusted_keys(settings: Settings, signer: HeadSigner | None = None) -> PublicKeys:
    """The keys the server's verify checks signed heads with when the caller pins none: its
    own signing key's and every ``--trusted-public-key`` (the keys of earlier rotations)."""
    keys = [] if signer is None else [signer.public]
    for value in settings.trusted_public_keys:
        try:
            keys.append(load_public_key(value))
        except ValueError as exc:
            raise ValueError(f"--trusted-public-key: {exc}") from exc
    return PublicKeys(keys)


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Starts the store and the services in order; whatever started is stopped in reverse,
    also when a later step fails to start."""
    settings: Settings = app.state.settings
    # sse-starlette keeps shutdown state per process; a new app starts undrained.
    AppStatus.should_exit = False
    async with AsyncExitStack() as stack:
        quiet_drops = QuietDrops()
        logging.getLogger("uvicorn.error").addFilter(quiet_drops)
        stack.callback(logging.getLogger("uvicorn.error").removeFilter, quiet_drops)
        stack.push_async_callback(app.state.streams.aclose)
        store = await _open_store(settings, stack, RunObservations(app.state.metrics))
        await _refill_stale_read_models(store)
        app.state.store = store
        app.state.commands = RunCommands(store)
        reader = _archive_reader(settings)
        app.state.queries = RunQueries(store, reader)
        await _start_keys(app, store, settings, stack)
        app.state.leadership = await _started(
            stack, store.leadership("services", interval=settings.leader_interval).start()
        )
        services = Services(
            store, app.state.leadership, settings, app.state.signer, archive=reader
        ).start()
        app.state.services = await _started(stack, services)
        app.state.metrics.watch_export(app.state.services.exporter)
        demo = await _start_demo(app, settings)
        if demo is not None:
            stack.push_async_callback(demo.aclose)
        yield


class _Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=_Closable)


async def _started(stack: AsyncExitStack, starting: Awaitable[C]) -> C:
    """The started object, to be closed when the stack unwinds."""
    started = await starting
    stack.push_async_callback(started.aclose)
    return started


async def _open_store(
    settings: Settings, stack: AsyncExitStack, observations: RunObservations
) -> EventStore:
    store = open_store(
        settings.database,
        projections=[RunProjection(watcher=observations)],
        synchronous=settings.synchronous,
        fanout_linger=settings.fanout_linger_ms / 1000,
        fanout_budget=settings.fanout_budget or None,
        replace_stale_tables=True,
    )
    store.add_commit_listener(observations.committed)
    await store.open()
    stack.push_async_callback(store.aclose)
    return store


async def _start_keys(
    app: Starlette, store: EventStore, settings: Settings, stack: AsyncExitStack
) -> None:
    app.state.keys = KeyRing(store, cache_seconds=settings.key_cache_seconds)
    await app.state.keys.setup()
    # The watch reads the key-change counter before open mode is decided: a key created in
    # between is a change it acts on.
    watch = KeyWatch(app.state.keys, app.state.open_streams, settings.key_poll_seconds)
    app.state.key_watch = await _started(stack, watch.start())
    await _announce_access(app, settings)
    _announce_metrics(settings)


async def _refill_stale_read_models(store: EventStore) -> None:
    """Before serving: a read model whose schema changed was recreated empty; fold the log."""
    if not store.stale_projections:
        return
    logger.warning(
        "the read model's tables changed (%s): rebuilding them from the log before serving",
        ", ".join(store.stale_projections),
    )
    report = await rebuild(store)
    logger.warning("read model rebuilt: %d events, %d runs", report.events, report.runs)


async def _start_demo(app: Starlette, settings: Settings) -> Demo | None:
    if not settings.demo:
        return None
    logger.warning("demo mode: simulated agents are creating and playing runs")
    callback_url = demo_callback_url(settings)
    url = callback_url.removesuffix("/demo/callbacks")
    key = None  # open mode; a keyed database gets the demo its own operator key
    if await app.state.keys.ever_keyed():
        key = await app.state.keys.create(DEFAULT_ORGANIZATION, Role.OPERATOR, name="demo")
    return await Demo(url, callback_url, pace=settings.demo_pace, key=key).start()


def _announce_metrics(settings: Settings) -> None:
    if settings.metrics_address is not None:
        logger.info("serving /metrics on %s only", settings.metrics_listen)
    elif settings.metrics_token is None:
        logger.info("/metrics is served in open mode only: see --metrics-token, --metrics-listen")


async def _announce_access(app: Starlette, settings: Settings) -> None:
    """Say at start whether the server is open, closed with no usable key, or refuses to start."""
    keys: KeyRing = app.state.keys
    if await keys.any_active():
        return
    if await keys.ever_keyed():
        logger.warning(
            "no active API key: every key of this database is revoked, so the server is CLOSED "
            "(every /v1 request gets 401) until one is created with 'runtrack keys create'"
        )
        return
    if not settings.loopback:
        raise RuntimeError(
            f"refusing to serve on {settings.host} without API keys: create one with "
            "'runtrack keys create --role admin', or bind to 127.0.0.1"
        )
    logger.warning(
        "no API key was ever created: serving OPEN on %s (loopback only); every request acts "
        "as an admin of the 'default' organization until the first key is created",
        settings.host,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods of the path the request matched (Starlette names only one route's)."""
    matching = [
        route
        for route in request.app.routes
        if isinstance(route, Route) and route.matches(request.scope)[0] is Match.PARTIAL
    ]
    if not matching:
        return []
    path = matching[0].path
    return sorted({m for route in matching if route.path == path for m in route.methods or ()})


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    """The client went away (or was cut by the body deadline) before its body arrived: no
    error of the server's, and the answer is never sent."""
    return error_response(400, "client_disconnected", "the connection closed before the body")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "the server failed to handle this request")
