"""What a client verb says when the server refuses it or cannot be reached.

The message names the fix: the option and variable a missing or refused key comes from, and the
address that could not be reached (a typo in ``--url`` reads as "connection refused" otherwise).
"""

from __future__ import annotations

import httpx

from api.client import CursorExpiredError, RuntrackError

__all__ = ["explain"]


def explain(exc: RuntrackError | httpx.TransportError, url: str, key: str | None) -> str:
    """One line for stderr, starting with ``error:``."""
    if isinstance(exc, httpx.TransportError):
        reason = str(exc) or type(exc).__name__
        return f"error: cannot reach the server at {url} (--url or RUNTRACK_URL): {reason}"
    said = f"{exc.code}: {exc.message}"
    if exc.status == 401 and key is None:
        return f"error: {url} needs an API key: pass --key or set RUNTRACK_KEY ({said})"
    if exc.status == 401:
        return f"error: {url} refused the API key given by --key or RUNTRACK_KEY ({said})"
    if exc.status == 403:
        return f"error: {exc.message} ({exc.code}): use a key that may (--key or RUNTRACK_KEY)"
    if isinstance(exc, CursorExpiredError) and exc.code == "run_archived":
        return f"error: {exc.message} ({exc.code}): ask a server with the segments (--archive-dir)"
    if isinstance(exc, CursorExpiredError):
        return (
            f"error: {exc.message} ({exc.code}); the oldest event kept is {exc.oldest_event_id}: "
            "'events tail --from-oldest' goes on from there without the archived events"
        )
    return f"error: {exc.message} ({exc.code})"
