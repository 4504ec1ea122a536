"""Running the app under uvicorn: one process, or several workers sharing the port."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from eventstore.sqlite_library import disable_memory_statistics

from .app import create_app
from .collector import tune_collector
from .log_redaction import redact_server_logs
from .settings import Settings

__all__ = ["check_settings", "serve", "worker_app"]

SHUTDOWN_GRACE_SECONDS = 5
_WORKER_SETTINGS = "RUNTRACK_WORKER_SETTINGS"
"""How the settings reach worker processes, which uvicorn starts afresh (``spawn``)."""


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; open streams are drained (sse-starlette) within the grace.

    Raises ValueError for settings that cannot be served (``--workers`` on SQLite).
    """
    check_settings(settings)
    _configure_logging()
    if settings.workers > 1:
        _serve_workers(settings)
        return
    config = uvicorn.Config(_process_app(settings), **_options(settings))
    redact_server_logs()  # uvicorn's handlers exist once its config is made
    uvicorn.Server(config).run()


def _serve_workers(settings: Settings) -> None:
    """uvicorn's supervisor over N worker processes; a worker that fails to start (a refused
    bind, no keys on a public address) makes the whole server exit with uvicorn's code 3."""
    os.environ[_WORKER_SETTINGS] = json.dumps(dataclasses.asdict(settings))
    config = uvicorn.Config(
        "api.server:worker_app", factory=True, workers=settings.workers, **_options(settings)
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)


def worker_app() -> Starlette:
    """The app of one worker process (``--workers``), from the settings its parent left."""
    _configure_logging()
    redact_server_logs()  # the worker's uvicorn configured its logging before loading the app
    return _process_app(Settings(**json.loads(os.environ[_WORKER_SETTINGS])))


def _process_app(settings: Settings) -> Starlette:
    """The app of a server process, with the process-wide settings made around it: SQLite's
    statistics off before anything opens a connection, the start-up heap frozen after."""
    disable_memory_statistics()
    app = create_app(settings)
    tune_collector()
    return app


def check_settings(settings: Settings) -> None:
    """Raise ValueError for settings that cannot be served together."""
    if settings.workers <= 1:
        return
    if not settings.database.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "--workers needs PostgreSQL (--database postgresql://…): on SQLite one process "
            "writes and streams, and several would contend for the file's write lock"
        )
    if settings.demo:
        raise ValueError("--demo runs in one process: drop --workers")


def _options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
        "lifespan": "on",
    }


def _configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
