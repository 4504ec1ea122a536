"""Every error the event store raises, in one tree.

    StoreError               base of everything below
    ├── InvalidEvent         the event is wrong: unknown type, bad payload, bad visibility
    ├── UnknownRun           no such run in this organization (never says if it exists elsewhere)
    ├── ConcurrencyConflict  lost an optimistic race: stale expected_sequence, run already exists
    ├── IdempotencyMismatch  an idempotency key reused with different content
    ├── RefusedByProjection  a projection refused the append in its transaction (see .code)
    ├── InvalidCursor        a cursor that is malformed or beyond the head of the log
    ├── CursorExpired        a cursor older than the oldest kept event (archived): 410
    ├── RunArchived          a run's archived events, where the segments cannot be read: 410
    ├── ArchiveRefused       an archive batch that cannot go ahead as asked
    └── StoreUnavailable     the database failed or the store is closed; nothing acknowledged

Driver errors (sqlite3, psycopg) never leave a backend module: they are translated at the boundary
and raised ``from`` the original, so the cause stays in the traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArchiveRefused",
    "ConcurrencyConflict",
    "CursorExpired",
    "IdempotencyMismatch",
    "InvalidCursor",
    "InvalidEvent",
    "RefusedByProjection",
    "RunArchived",
    "StoreError",
    "StoreUnavailable",
    "UnknownRun",
    "translate_driver_error",
]


class StoreError(Exception):
    """Base class. ``code`` is a stable machine-readable name; ``details`` is JSON-safe context."""

    code = "store_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class InvalidEvent(StoreError):
    code = "invalid_event"


class UnknownRun(StoreError):
    code = "unknown_run"


class ConcurrencyConflict(StoreError):
    code = "concurrency_conflict"


class IdempotencyMismatch(StoreError):
    code = "idempotency_mismatch"


class RefusedByProjection(StoreError):
    """Raised by a projection hook to refuse one append; ``code`` may be overridden per instance."""

    code = "refused"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message, **details)
        if code is not None:
            self.code = code


class InvalidCursor(StoreError):
    code = "invalid_cursor"


class StoreUnavailable(StoreError):
    code = "store_unavailable"


def translate_driver_error(
    exc: BaseException,
    *,
    integrity: type[BaseException],
    driver: type[BaseException],
    name: str,
    data: type[BaseException] | None = None,
) -> StoreError | None:
    """The one mapping of a database driver's errors; each backend names its driver's classes
    (``data``: a value the database cannot hold, e.g. NUL in PostgreSQL text: the caller's)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, integrity):
        return ConcurrencyConflict(f"the database refused the write: {exc}")
    if data is not None and isinstance(exc, data):
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return InvalidEvent(f"{name} cannot store a value of this request: {first_line}")
    if isinstance(exc, driver):
        return StoreUnavailable(f"{name} error: {exc}")
    return None


class CursorExpired(StoreError):
    """A cursor older than the oldest event the live log keeps: what it pointed after was
    archived. ``details`` name the oldest available id (and the segment, where one is known)."""

    code = "cursor_expired"


class RunArchived(StoreError):
    """A run whose events (some or all) are archived, asked for on a server that cannot read
    the segments (no ``--archive-dir``, or the segment is missing there): ``details`` name the
    segment."""

    code = "run_archived"


class ArchiveRefused(StoreError):
    """An archive that cannot go ahead as asked (a segment that does not check, another
    archive that moved the cut meanwhile, a chain that does not join the anchor)."""

    code = "archive_refused"
