"""Who may scrape ``/metrics``: the deployment operator, never a tenant's key.

``/metrics`` counts every organization's runs, so it is served only with a credential of its
own (``--metrics-token``), on an address of its own (``--metrics-listen``), or in open mode,
where the one anonymous caller already is the only organization's admin.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.server.auth import authenticate
from api.server.errors import ApiError, error_response
from api.server.settings import Settings

__all__ = ["MetricsSocket", "admit_scraper"]

METRICS_PATH = "/metrics"


async def admit_scraper(request: Request) -> None:
    """Raise 404 where ``/metrics`` is not served, 401 without its token where it is."""
    settings: Settings = request.app.state.settings
    address = settings.metrics_address
    if address is not None:
        if _local_port(request.scope) != address[1]:
            raise _not_served("it is served on the metrics address only (--metrics-listen)")
    elif settings.metrics_token is None and not await _open_mode(request):
        raise _not_served("start the server with --metrics-token or --metrics-listen")
    if settings.metrics_token is not None:
        _check_token(request, settings.metrics_token)


async def _open_mode(request: Request) -> bool:
    """Whether the caller is open mode's anonymous admin (not a key, not refused)."""
    try:
        principal = await authenticate(request)
    except ApiError:
        return False
    return principal.key_id is None


def _check_token(request: Request, token: str) -> None:
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "/metrics needs 'Authorization: Bearer <metrics token>' (--metrics-token)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def _not_served(how: str) -> ApiError:
    return ApiError(
        404,
        "not_found",
        f"/metrics is the deployment operator's and is not served here: {how} "
        "(docs/operations.md, 'Metrics')",
    )


def _local_port(scope: Scope) -> int | None:
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else None


class MetricsSocket:
    """On the metrics socket (``--metrics-listen``), ``/metrics`` and nothing else: the API
    stays on its own address, wherever the metrics one is reachable from."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        on_metrics_socket = scope["type"] == "http" and _local_port(scope) == self.port
        if on_metrics_socket and scope["path"] != METRICS_PATH:
            answer = error_response(404, "not_found", "only /metrics is served here")
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)
