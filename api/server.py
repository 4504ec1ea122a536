"""Running the app under uvicorn, with a bounded graceful shutdown."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .settings import Settings

__all__ = ["serve"]

SHUTDOWN_GRACE_SECONDS = 5


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; open streams are drained (sse-starlette) within the grace."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=settings.access_log,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        lifespan="on",
    )
    uvicorn.Server(config).run()
