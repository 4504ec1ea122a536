"""What ``runtrack track`` shows while it follows runs: a live table on a terminal, one stable
line per change otherwise; each run's messages the moment that run ends; a summary by status.

The line format (``--no-ux`` or a pipe), tab-separated, documented in docs/cli.md::

    RUN_ID<TAB>STATUS<TAB>STOP_REASON      when a run is first seen and on each status change
      ROLE: CONTENT                        the run's messages, right after its terminal line
    N completed, M not completed (...)     the summary, last
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from api.cli.styles import elapsed, queued_for, status_text, styled_status
from api.client import CursorExpiredError, RuntrackClient
from api.client.models import Message, Run

__all__ = ["LiveView", "PlainView", "QuietView", "TrackView", "follow", "summary"]

Ended = list[tuple[Run, list[Message]]]


class TrackView(Protocol):
    def changed(self, run: Run) -> None: ...
    def ended(self, run: Run, messages: Sequence[Message]) -> None: ...
    def summary(self, ended: Sequence[Run], still_open: Sequence[Run]) -> None: ...


def _counts(runs: Sequence[Run]) -> str:
    counted = Counter(run.status for run in runs)
    return ", ".join(f"{status} {count}" for status, count in counted.items())


def summary(ended: Sequence[Run], still_open: Sequence[Run]) -> str:
    """``2 completed, 1 not completed (failed 1), 1 still open (queued 1)``."""
    failed = [run for run in ended if run.status != "completed"]
    said = f"{len(ended) - len(failed)} completed, {len(failed)} not completed"
    if failed:
        said += f" ({_counts(failed)})"
    if still_open:
        said += f", {len(still_open)} still open ({_counts(still_open)})"
    return said


class PlainView:
    """One line per change, for scripts and CI logs: never a redraw, never a colour."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str | None]] = {}

    def changed(self, run: Run) -> None:
        state = (run.status, run.stop_reason)
        if self._seen.get(run.id) != state:
            self._seen[run.id] = state
            typer.echo(f"{run.id}\t{run.status}\t{run.stop_reason or '-'}")

    def ended(self, run: Run, messages: Sequence[Message]) -> None:
        self.changed(run)
        for message in messages:
            typer.echo(f"  {message.role}: {message.content}")

    def summary(self, ended: Sequence[Run], still_open: Sequence[Run]) -> None:
        typer.echo(summary(ended, still_open))


class LiveView:
    """A table redrawn a few times a second (elapsed ticks) with messages printed above it."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._runs: dict[str, Run] = {}
        self._live = Live(console=self.console, get_renderable=self._table, refresh_per_second=4)

    @contextmanager
    def shown(self) -> Iterator[LiveView]:
        with self._live:
            yield self

    def _table(self) -> Table:
        table = Table("id", "agent id", "status", "queued", "elapsed", "stop reason")
        for run in list(self._runs.values()):  # a copy: the refresh thread reads it
            table.add_row(
                run.id,
                run.agent_id,
                status_text(run.status),
                queued_for(run),
                elapsed(run),
                run.stop_reason or "-",
            )
        return table

    def changed(self, run: Run) -> None:
        self._runs[run.id] = run
        self._live.refresh()

    def ended(self, run: Run, messages: Sequence[Message]) -> None:
        self.changed(run)
        head = f"[bold]{escape(run.id)}[/] {styled_status(run.status)}"
        self.console.print(head + f" {escape(run.stop_reason or '-')}")
        for message in messages:
            self.console.print(f"  {escape(message.role)}: {escape(message.content)}")

    def summary(self, ended: Sequence[Run], still_open: Sequence[Run]) -> None:
        self.console.print(escape(summary(ended, still_open)))


async def follow(
    client: RuntrackClient, ids: list[str], give_up_after: float | None, view: TrackView
) -> tuple[Ended, list[Run]]:
    """The runs that ended (with their messages) and, after ``give_up_after`` seconds, those
    still open (``asyncio.wait``, not ``asyncio.timeout``: the runs that ended are kept)."""
    tasks = [asyncio.ensure_future(_track(client, run_id, view)) for run_id in ids]
    try:
        done, _ = await asyncio.wait(
            tasks, timeout=give_up_after, return_when=asyncio.FIRST_EXCEPTION
        )
        ended = [task.result() for task in tasks if task in done]  # raises a task's error
    finally:
        for task in tasks:
            task.cancel()
    pending = [run_id for run_id, task in zip(ids, tasks, strict=True) if task not in done]
    return ended, [await client.get_run(run_id) for run_id in pending]


async def _track(client: RuntrackClient, run_id: str, view: TrackView) -> tuple[Run, list[Message]]:
    """Follow one run's channel; re-read the run on each status change, show it when it ends."""
    run = await client.get_run(run_id)
    view.changed(run)
    if not run.terminal:
        async for event in client.stream(run_id=run_id, after=run.last_event_id):
            if event.event_type == "run_status_changed":
                view.changed(await client.get_run(run_id))
        run = await client.get_run(run_id)
    try:
        messages = await client.messages(run_id)
    except CursorExpiredError as exc:  # archived, and this server cannot read the segment
        typer.echo(f"note: run {run_id}'s messages are not shown: {exc.message}", err=True)
        messages = []
    view.ended(run, messages)
    return run, messages


class QuietView:
    """For ``-o json``: nothing while tracking, the JSON at the end is the whole output."""

    def changed(self, run: Run) -> None:
        pass

    def ended(self, run: Run, messages: Sequence[Message]) -> None:
        pass

    def summary(self, ended: Sequence[Run], still_open: Sequence[Run]) -> None:
        pass
