"""One mapping from a run's status to its style, shared by every verb that prints a status, so
that ``failed`` is the same red in ``get runs``, ``get run`` and ``track`` (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.markup import escape
from rich.text import Text

from api.client.models import Run

__all__ = ["STATUS_STYLES", "elapsed", "queued_for", "status_text", "styled_status"]

STATUS_STYLES: dict[str, str] = {
    "queued": "dim",
    "waiting_on_lane": "dim",
    "running": "cyan",
    "waiting_on_tool": "blue",
    "waiting_on_child": "blue",
    "waiting_on_human": "magenta",
    "resuming": "cyan",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "timed_out": "red",
}
"""Every status of ``api.client.contract.STATUSES`` (``tests/api/cli/test_styles.py``)."""


def styled_status(status: str) -> str:
    """The status as rich markup; an unknown status (a newer server) is shown unstyled."""
    style = STATUS_STYLES.get(status)
    return f"[{style}]{escape(status)}[/]" if style else escape(status)


def status_text(status: str) -> Text:
    """The status as a rich ``Text`` (no markup parsing: a table cell)."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _instant(stamp: str | None) -> datetime | None:
    if stamp is None:
        return None
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(start: datetime, end: datetime) -> str:
    return f"{max((end - start).total_seconds(), 0.0):.1f}s"


def elapsed(run: Run, now: datetime | None = None) -> str:
    """Time running, from the start to the end (or to now, while it runs); ``-`` if it never
    started. Not ``total_duration_ns``, which counts from creation: the time queued is
    ``queued_for``'s, shown apart."""
    started = _instant(run.started_at)
    if started is None:
        return "-"
    ended = _instant(run.completed_at) if run.terminal else None
    return _seconds(started, ended or now or datetime.now(UTC))


def queued_for(run: Run, now: datetime | None = None) -> str:
    """Time from creation to the start (or to now, while it has not started)."""
    created = _instant(run.created_at)
    started = _instant(run.started_at)
    if created is None:
        return "-"
    if started is None and run.terminal:
        started = _instant(run.completed_at)
    return _seconds(created, started or now or datetime.now(UTC))
