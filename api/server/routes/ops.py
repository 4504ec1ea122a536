"""Operations: health, readiness, metrics, the OpenAPI document, audit, and the dashboard root."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api.client.models import Health, Me, NotReady, Ready
from api.server.auth import Role, require
from api.server.metrics_access import admit_scraper
from api.server.openapi import openapi_document
from api.server.routes import audit
from api.server.routes._common import json_response, store

__all__ = ["routes"]

logger = logging.getLogger("runtrack")


async def healthz(request: Request) -> JSONResponse:
    return json_response(Health(status="ok").model_dump(mode="json"))


async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers a read."""
    try:
        head = await store(request).head()
    except Exception as exc:  # any failure means not ready
        # The probe takes no key: the answer names the kind of failure, the log its text
        # (which may name the database's host and user).
        logger.warning("not ready: the database did not answer a read", exc_info=True)
        failed = NotReady(status="unavailable", reason=type(exc).__name__)
        return json_response(failed.model_dump(mode="json"), 503)
    leader = request.app.state.leadership.is_leader
    return json_response(Ready(status="ready", head_id=head, leader=leader).model_dump(mode="json"))


async def metrics(request: Request) -> Response:
    """Every organization's totals: for the deployment operator only (``admit_scraper``)."""
    await admit_scraper(request)
    body = await request.app.state.metrics.render(lambda: _status_counts(request))
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def _status_counts(request: Request) -> dict[str, int]:
    rows = await store(request).fetchall("SELECT status, COUNT(*) FROM runs GROUP BY status")
    return {str(status): int(count) for status, count in rows}


async def openapi(request: Request) -> JSONResponse:
    return json_response(openapi_document(request.app.state.settings.max_body_bytes))


async def me(request: Request) -> JSONResponse:
    """Who the key is: what a client (the dashboard's visibility switch) may offer."""
    principal = await require(request, Role.USER)
    me = Me(
        key_id=principal.key_id,
        organization_id=principal.organization_id,
        role=principal.role.label,
        max_visibility=principal.role.max_visibility.label,
    )
    return json_response(me.model_dump(mode="json"))


STATIC = Path(__file__).parent.parent / "static"


async def dashboard(request: Request) -> FileResponse:
    """The dashboard's page; everything else it needs is under /static."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/v1/me", me, methods=["GET"]),
    Route("/v1/audit/verify", audit.audit_verify, methods=["GET"]),
    Route("/v1/audit/head", audit.audit_head, methods=["GET"]),
    Route("/v1/audit/export", audit.audit_export, methods=["GET"]),
    Route("/", dashboard, methods=["GET"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
