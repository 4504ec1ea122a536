"""``runtrack get run ID``'s detail view: what a person debugging one run asks first.

Below the run's row come ``label: value`` lines (status, why it stopped, where it ran, how long
it queued and ran, what it used, its children, where it can resume from, what it will do next),
built from the run itself and its children's runs: nothing but ``api.client`` reads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeGuard

import typer
from rich.console import Console
from rich.markup import escape

from api.cli.styles import STATUS_STYLES, elapsed, queued_for
from api.client import RuntrackClient
from api.client.models import Run

__all__ = ["children_of", "detail_lines", "show_detail"]


async def children_of(client: RuntrackClient, run: Run) -> list[Run]:
    """The run's child runs as they stand now (one read each: the run lists only their ids)."""
    return [await client.get_run(child_id) for child_id in run.child_run_ids]


def show_detail(run: Run, children: Sequence[Run], plain: bool) -> None:
    """Print the detail lines; on a terminal the status is coloured as every verb colours it
    (``api/cli/styles.py``)."""
    lines = detail_lines(run, children, datetime.now(UTC))
    if plain or not sys.stdout.isatty():
        for label, value in lines:
            typer.echo(f"{label}: {value}")
        return
    console = Console(highlight=False)
    for label, value in lines:
        shown = escape(value)
        if label == "status":
            style = STATUS_STYLES.get(run.status)
            shown = f"[{style}]{shown}[/]" if style else shown
        console.print(f"[bold]{escape(label)}[/]: {shown}")


def detail_lines(run: Run, children: Sequence[Run], now: datetime) -> list[tuple[str, str]]:
    """Every line of the view, in reading order; a line without a value is left out."""
    lines = [
        ("status", run.status + (" (cancel requested)" if run.cancel_requested else "")),
        ("stop reason", run.stop_reason),
        ("error", run.error),
        ("detail", run.detail if run.detail != run.error else None),
        ("agent", run.agent_id),
        ("conversation", run.conversation_id),
        ("lane", run.lane_key),
        ("parent", run.parent_run_id),
        ("created", run.created_at),
        ("started", run.started_at),
        ("ended", run.completed_at),
        *_durations(run, now),
        ("tokens", _tokens(run)),
        ("steps", str(run.num_steps)),
        ("tools", ", ".join(run.tools_used) or None),
        *[("child", _child(child)) for child in children],
        ("checkpoint", _checkpoint(run)),
        ("resume available", "yes" if run.resume_available else "no"),
        ("next action", _next_action(run)),
        *_progress(run),
    ]
    return [(label, value) for label, value in lines if value]


def _durations(run: Run, now: datetime) -> list[tuple[str, str | None]]:
    """Time queued (created to started) apart from time running: a run that waited an hour for
    a worker did not run for an hour. A live run's clock is ``now``."""
    lines: list[tuple[str, str | None]] = [("queued for", queued_for(run, now))]
    if run.started_at is None:
        return lines
    return [*lines, ("duration" if run.terminal else "running for", elapsed(run, now))]


def _tokens(run: Run) -> str:
    return f"{run.total_tokens} ({run.prompt_tokens} prompt, {run.completion_tokens} completion)"


def _child(child: Run) -> str:
    return f"{child.id} {child.agent_id} {child.status} {child.stop_reason or '-'}"


def _checkpoint(run: Run) -> str | None:
    if run.checkpoint_id is None:
        return None
    return run.checkpoint_id + (f" ({run.checkpoint_kind})" if run.checkpoint_kind else "")


def _next_action(run: Run) -> str | None:
    """The journal's next step; a run that ended hands off with ``handoff_next_action``."""
    journal = run.journal or {}
    found = journal.get("next_action") or journal.get("handoff_next_action")
    return found if isinstance(found, str) else None


def _progress(run: Run) -> list[tuple[str, str | None]]:
    """Metadata, progress (``progress``/``total`` in the metadata) and the open question."""
    lines: list[tuple[str, str | None]] = []
    if run.metadata:
        lines.append(("metadata", json.dumps(run.metadata, sort_keys=True)))
    progress, total = run.metadata.get("progress"), run.metadata.get("total")
    if _number(progress) and _number(total) and total > 0:
        lines.append(("progress", f"{progress}/{total} ({100 * progress / total:.0f}%)"))
    if run.status == "waiting_on_human" and run.question is not None:
        question = run.question
        choices = f" [{' / '.join(question.choices)}]" if question.choices else ""
        lines.append((f"question {question.question_id}", f"{question.question}{choices}"))
    return lines


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
