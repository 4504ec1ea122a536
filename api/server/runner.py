"""Running the app under uvicorn: one process, or several processes sharing the port."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from api.server.app import create_app, trusted_keys
from api.server.gc_tuning import tune_collector
from api.server.log_redaction import redact_server_logs
from api.server.settings import Settings, callback_networks, listen_address
from api.server.telemetry import MIN_REQUEST_BYTES, otlp_target
from api.server.transport.protocol import ConnectionLimits, ServerConfig
from eventstore import HeadSigner, disable_memory_statistics

__all__ = ["check_settings", "child_app", "serve", "server_config"]

SHUTDOWN_GRACE_SECONDS = 5
_CHILD_SETTINGS = "RUNTRACK_CHILD_SETTINGS"
"""How the settings reach the child processes, which uvicorn starts afresh (``spawn``)."""


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; open streams are drained (sse-starlette) within the grace.

    Raises ValueError for settings that cannot be served (``--processes`` on SQLite).
    """
    check_settings(settings)
    _configure_logging()
    if settings.processes > 1:
        _serve_processes(settings)
        return
    config = server_config(_process_app(settings), settings)
    sockets = _sockets(config, settings)
    redact_server_logs()  # uvicorn's handlers exist once its config is made
    uvicorn.Server(config).run(sockets=sockets)


def _sockets(config: uvicorn.Config, settings: Settings) -> list[socket.socket] | None:
    """The API's socket and the metrics one (``--metrics-listen``): one app serves both, and
    tells them apart by the local port a request arrived on (``api/server/metrics_access.py``)."""
    if settings.metrics_address is None:
        return None  # uvicorn binds the API's address itself
    host, port = settings.metrics_address
    # log_config=None: a second config must not configure logging again (it would turn the
    # access log on and replace the handlers that redact keys).
    metrics = uvicorn.Config(config.app, host=host, port=port, log_config=None).bind_socket()
    return [config.bind_socket(), metrics]


def _serve_processes(settings: Settings) -> None:
    """uvicorn's supervisor over N child processes; a child that fails to start (a refused
    bind, no keys on a public address) makes the whole server exit with uvicorn's code 3."""
    os.environ[_CHILD_SETTINGS] = json.dumps(dataclasses.asdict(settings))
    config = server_config(
        "api.server.runner:child_app", settings, factory=True, workers=settings.processes
    )
    supervisor = Multiprocess(config, sockets=_sockets(config, settings) or [config.bind_socket()])
    supervisor.run()
    if any(child.exitcode == STARTUP_FAILURE for child in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)


def child_app() -> Starlette:
    """The app of one child process (``--processes``), from the settings its parent left."""
    _configure_logging()
    redact_server_logs()  # the child's uvicorn configured its logging before loading the app
    return _process_app(Settings(**json.loads(os.environ[_CHILD_SETTINGS])))


def _process_app(settings: Settings) -> Starlette:
    """The app of a server process, with the process-wide settings made around it: SQLite's
    statistics off before anything opens a connection, the start-up heap frozen after."""
    disable_memory_statistics()
    app = create_app(settings)
    tune_collector()
    return app


def check_settings(settings: Settings) -> None:
    """Raise ValueError for settings that cannot be served together."""
    _check_metrics(settings)
    _check_callbacks(settings)
    otlp_target(os.environ)  # an OTEL endpoint that is no http(s) URL, named
    _check_otel(settings)
    _check_signing(settings)
    _check_retention(settings)
    if not 0.05 <= settings.key_poll_seconds <= 1.0:
        raise ValueError(
            "--key-poll-seconds must be between 0.05 and 1: a revocation must reach every "
            "server within a second"
        )
    if settings.processes <= 1:
        return
    if not settings.database.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "--processes needs PostgreSQL (--database postgresql://…): on SQLite one process "
            "writes and streams, and several would contend for the file's write lock"
        )
    if settings.demo:
        raise ValueError("--demo runs in one process: drop --processes")


def _check_otel(settings: Settings) -> None:
    if settings.otel_max_request_bytes < MIN_REQUEST_BYTES:
        raise ValueError(
            f"--otel-max-request-bytes must be at least {MIN_REQUEST_BYTES}: below it a span "
            "without content may not fit"
        )
    if settings.otel_drop_after < 0:
        raise ValueError("--otel-drop-after must be 0 (never drop) or more")


def _check_signing(settings: Settings) -> None:
    if settings.chain_head_seconds <= 0:
        raise ValueError("--chain-head-seconds must be above 0")
    if settings.signing_key is not None:
        HeadSigner.from_file(settings.signing_key)  # raises ValueError naming the problem
    trusted_keys(settings)  # each --trusted-public-key readable, or a ValueError naming it


def _check_retention(settings: Settings) -> None:
    if settings.retain is None:
        return
    from projections import parse_age

    parse_age(settings.retain)  # raises ValueError naming the expected form
    if settings.archive_dir is None:
        raise ValueError("--retain needs --archive-dir: the archived events go there")
    if settings.archive_interval <= 0:
        raise ValueError("--archive-interval must be above 0 seconds")


def _check_metrics(settings: Settings) -> None:
    if settings.metrics_token is not None and not settings.metrics_token.strip():
        raise ValueError("--metrics-token is empty: give a token, or leave it out")
    if settings.metrics_listen is None:
        return
    _, port = listen_address(settings.metrics_listen)  # raises ValueError naming the problem
    if port == settings.port:
        raise ValueError("--metrics-listen needs a port of its own, not the API's --port")


def server_config(app: Starlette | str, settings: Settings, **extra: Any) -> ServerConfig:
    """uvicorn's config for ``settings``, with the connection limits (transport/protocol.py)."""
    options = {**_options(settings), **extra}
    return ServerConfig(app, limits=connection_limits(settings), **options)


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
    )


def _check_callbacks(settings: Settings) -> None:
    try:
        callback_networks(settings)
    except ValueError as exc:
        raise ValueError(f"--callback-allow-network: {exc}") from None
    if settings.callback_timeout <= 0:
        raise ValueError("--callback-timeout must be more than 0 seconds")


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "lifespan": "on",
    }


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
