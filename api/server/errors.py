"""HTTP errors: every 4xx/5xx body is ``{"error": {"code", "message", "details"}}``.

Store and projection errors are mapped here, once, to a status code; nothing else in the API
decides status codes for them.

    ApiError                    raised by routes for HTTP-level problems (bad JSON, auth, size)
    StoreError (eventstore)     mapped by STATUS_FOR below
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from eventstore import (
    ArchiveRefused,
    ConcurrencyConflict,
    CursorExpired,
    IdempotencyMismatch,
    InvalidCursor,
    InvalidEvent,
    RefusedByProjection,
    RunArchived,
    StoreError,
    StoreUnavailable,
    UnknownRun,
)

__all__ = [
    "OLDEST_EVENT_HEADER",
    "ApiError",
    "error_response",
    "handle_api_error",
    "handle_store_error",
    "status_for",
]


OLDEST_EVENT_HEADER = "Runtrack-Oldest-Event-Id"
"""On a 410: the oldest event the live log keeps (a cursor of that id minus one is valid)."""


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


STATUS_FOR: tuple[tuple[type[StoreError], int], ...] = (
    (InvalidEvent, 422),
    (UnknownRun, 404),
    (ConcurrencyConflict, 409),
    (IdempotencyMismatch, 409),
    (RefusedByProjection, 409),
    (InvalidCursor, 400),
    (CursorExpired, 410),
    (RunArchived, 410),
    (ArchiveRefused, 409),
    (StoreUnavailable, 503),
)


def status_for(error: StoreError) -> int:
    for kind, status in STATUS_FOR:
        if isinstance(error, kind):
            return status
    return 500


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


async def handle_store_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoreError)
    code = "run_not_found" if isinstance(exc, UnknownRun) else exc.code
    oldest = exc.details.get("oldest_event_id")
    headers = None if oldest is None else {OLDEST_EVENT_HEADER: str(oldest)}
    return error_response(status_for(exc), code, exc.message, exc.details, headers)


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
