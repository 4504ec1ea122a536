"""The client verbs of ``runtrack``: they talk to a server through ``RuntrackClient`` only.

They import nothing of the server or the store (``tests/api/cli/test_imports.py``), so a verb
such as ``runtrack get runs`` starts as light as the client.

Output: a table on a terminal, plain tab-separated lines otherwise (or with ``--no-ux``), and
JSON with ``-o json``. Exit codes: 0 success, 1 a run failed / verification failed, 2 usage or
connection errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from api.cli import run_detail, track_view
from api.cli.errors import explain
from api.cli.styles import elapsed, status_text
from api.client import CursorExpiredError, RuntrackClient, RuntrackError
from api.client.contract import STATUSES, TERMINAL_STATUSES
from api.client.models import ExportPage, Message, Run, StoredEvent

__all__ = ["Connection", "events_app", "get_app", "register", "run_async"]

T = TypeVar("T")
COLUMNS = ("id", "agent_id", "status", "elapsed", "stop_reason", "total_tokens")

get_app = typer.Typer(no_args_is_help=True, help="Show runs.")
events_app = typer.Typer(no_args_is_help=True, help="Follow or export the event log.")


@dataclass
class Connection:
    url: str = "http://127.0.0.1:8000"
    key: str | None = None
    plain: bool = False
    last: ClassVar[Connection | None] = None
    """The connection whose client was made last: the one an error message names."""

    def client(self) -> RuntrackClient:
        Connection.last = self
        return RuntrackClient(self.url, self.key)


def _connection(ctx: typer.Context) -> Connection:
    found = ctx.find_root().obj
    return found if isinstance(found, Connection) else Connection()


def run_async(action: Callable[[], Awaitable[T]]) -> T:
    """Run a client call; server and connection errors become a message and exit code 2."""
    try:
        return asyncio.run(action())  # type: ignore[arg-type]
    except (RuntrackError, httpx.TransportError) as exc:
        connection = Connection.last or Connection()
        typer.echo(explain(exc, connection.url, connection.key), err=True)
        raise typer.Exit(2) from exc


Output = Annotated[Literal["table", "json"], typer.Option("--output", "-o", help="table or json")]
"""A closed choice: ``-o yaml`` or ``-o JSON`` is a usage error, not a table in disguise."""
VisibilityName = Literal["user", "operator", "internal"]
"""``api.client.contract.VISIBILITIES`` as a type, so that ``--visibility bogus`` is refused."""
OPEN_STATUSES = [status for status in STATUSES if status not in TERMINAL_STATUSES]


def show_runs(runs: Sequence[Run], output: str, plain: bool) -> None:
    if output == "json":
        typer.echo(json.dumps([run.model_dump() for run in runs], indent=2))
        return
    if plain or not sys.stdout.isatty():
        for run in runs:
            typer.echo("\t".join(_cell(run, column) for column in COLUMNS))
        return
    Console().print(_table(runs))


def _table(runs: Sequence[Run]) -> Table:
    table = Table(*[c.replace("_", " ") for c in COLUMNS])
    for run in runs:
        row = [_cell(run, column) for column in COLUMNS]
        table.add_row(*row[:2], status_text(run.status), *row[3:])
    return table


def _cell(run: Run, column: str) -> str:
    if column == "elapsed":
        return elapsed(run)
    value = getattr(run, column)
    return "-" if value is None else str(value)


@get_app.command("runs")
def get_runs(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="only active runs")] = False,
    agent: Annotated[str | None, typer.Option(help="only this agent's runs")] = None,
    status: Annotated[list[str] | None, typer.Option(help="only these statuses")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    output: Output = "table",
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="a live view; Ctrl+C leaves")
    ] = False,
) -> None:
    """List recent runs (newest first)."""
    connection = _connection(ctx)
    filters: dict[str, Any] = {"agent_id": agent, "status": status or None, "limit": limit}
    if active:
        filters["active"] = True
    if watch:
        with contextlib.suppress(KeyboardInterrupt):
            run_async(lambda: _watch(connection, filters))
        return

    async def fetch() -> list[Run]:
        async with connection.client() as client:
            runs, _ = await client.list_runs(**filters)
            return runs

    show_runs(run_async(fetch), output, connection.plain)


async def _watch(connection: Connection, filters: dict[str, Any]) -> None:
    """Redraw the list whenever the firehose says something changed (at most 4 times a second)."""
    async with connection.client() as client:
        changed = asyncio.Event()
        changed.set()
        follower = asyncio.create_task(_mark_changes(client, await client.head(), changed))
        try:
            if connection.plain or not sys.stdout.isatty():
                await _redraw_plain(client, filters, changed)
            else:
                await _redraw_live(client, filters, changed)
        finally:
            follower.cancel()


async def _mark_changes(client: RuntrackClient, head: int, changed: asyncio.Event) -> None:
    async for _ in client.stream(after=head, visibility="user"):
        changed.set()


async def _redraw_live(
    client: RuntrackClient, filters: dict[str, Any], changed: asyncio.Event
) -> None:
    with Live(_table([]), auto_refresh=False) as live:
        while True:
            await changed.wait()
            changed.clear()
            runs, _ = await client.list_runs(**filters)
            live.update(_table(runs), refresh=True)
            await asyncio.sleep(0.25)


async def _redraw_plain(
    client: RuntrackClient, filters: dict[str, Any], changed: asyncio.Event
) -> None:
    while True:
        await changed.wait()
        changed.clear()
        runs, _ = await client.list_runs(**filters)
        for run in runs:
            typer.echo("\t".join(_cell(run, column) for column in COLUMNS))
        typer.echo("", nl=True)
        await asyncio.sleep(0.25)


@get_app.command("run")
def get_run(
    ctx: typer.Context,
    run_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="wait for a terminal status")] = False,
    messages: Annotated[bool, typer.Option("--messages", help="print the run's messages")] = False,
    output: Output = "table",
) -> None:
    """Show one run (optionally after waiting for it to end)."""
    connection = _connection(ctx)

    async def fetch() -> tuple[Run, list[Message], list[Run]]:
        async with connection.client() as client:
            run = await (client.wait(run_id) if wait else client.get_run(run_id))
            found = await client.messages(run_id) if messages else []
            return run, found, [] if output == "json" else await run_detail.children_of(client, run)

    run, found, children = run_async(fetch)
    if output == "json":
        shown = {"run": run.model_dump(), "messages": _dumped(found)} if messages else None
        typer.echo(json.dumps(shown or run.model_dump(), indent=2))
    else:
        show_runs([run], output, connection.plain)
        run_detail.show_detail(run, children, connection.plain)
        for message in found:
            typer.echo(f"{message.role}: {message.content}")
    if wait:
        raise typer.Exit(_ended_code([run]))


def _dumped(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [message.model_dump() for message in messages]


def _ended_code(runs: Sequence[Run]) -> int:
    """``track``'s code for runs that ended: 0 if every one completed, else 1."""
    return 0 if all(run.status == "completed" for run in runs) else 1


def register(app: typer.Typer) -> None:
    """Add the client verbs to the ``runtrack`` command."""
    app.add_typer(get_app, name="get")
    app.add_typer(events_app, name="events")
    from api.cli.audit_verbs import audit_app  # here: these modules import this one
    from api.cli.debug_verbs import debug_app

    app.add_typer(audit_app, name="audit")
    app.add_typer(debug_app, name="debug")
    app.command()(send)
    app.command()(cancel)
    app.command()(resume)
    app.command()(answer)
    app.command()(track)


def send(
    ctx: typer.Context,
    agent: str,
    message: str,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="print the run id and return")] = False,
) -> None:
    """Create a run carrying MESSAGE for AGENT; wait for it and print its messages."""
    connection = _connection(ctx)

    async def go() -> tuple[Run, list[Message]]:
        async with connection.client() as client:
            run = await client.create_run(agent, message=message)
            typer.echo(f"Message sent. Run ID: {run.id}")
            if no_wait:
                return run, []
            final = await client.wait(run.id)
            return final, await client.messages(run.id)

    run, found = run_async(go)
    for entry in found:
        typer.echo(f"{entry.role}: {entry.content}")
    if not no_wait and run.status != "completed":
        typer.echo(f"error: {_why(run)}", err=True)
        raise typer.Exit(1)


def _why(run: Run) -> str:
    """One line on how a run ended: what a script's log needs when it did not complete."""
    said = [f"stop reason {run.stop_reason or '-'}", f"error {run.error or '-'}"]
    if run.detail and run.detail != run.error:
        said.append(f"detail {run.detail}")
    return f"run {run.id} {run.status}: " + ", ".join(said)


def cancel(ctx: typer.Context, run_id: str, reason: str | None = None) -> None:
    """Request cancellation of a run."""
    connection = _connection(ctx)

    async def go() -> Run:
        async with connection.client() as client:
            return await client.cancel(run_id, reason)

    run = run_async(go)
    typer.echo(f"{run.id}\t{run.status}\tcancel requested")


def resume(ctx: typer.Context, run_id: str) -> None:
    """Resume a failed or timed-out run from its latest checkpoint."""
    connection = _connection(ctx)

    async def go() -> Run:
        async with connection.client() as client:
            return await client.resume(run_id)

    run = run_async(go)
    typer.echo(f"{run.id}\t{run.status}")


def answer(
    ctx: typer.Context,
    run_id: str,
    text: str,
    question: Annotated[
        str | None, typer.Option("--question", help="the question id (default: the open one)")
    ] = None,
    as_text: Annotated[
        bool, typer.Option("--text", help="send TEXT as a string even if it parses as JSON")
    ] = False,
) -> None:
    """Answer a run waiting on a human. TEXT is sent as JSON when it parses as JSON (true, 42,
    {"approve": true}), else as a string."""
    connection = _connection(ctx)
    response = text if as_text else _json_or_text(text)

    async def go() -> Run:
        async with connection.client() as client:
            return await client.answer(run_id, response, question)

    run = run_async(go)
    typer.echo(f"{run.id}\t{run.status}\tanswered")


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def track(
    ctx: typer.Context,
    run_ids: Annotated[list[str] | None, typer.Argument(help="runs to track")] = None,
    agent: Annotated[
        str | None, typer.Option(help="track every run of this agent that has not ended")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="give up after SECONDS (exit 2)")
    ] = None,
    output: Output = "table",
) -> None:
    """Follow runs until all have ended: exit 0 if all completed, 1 otherwise, 2 on errors, on
    --timeout, or when --agent has no run that has not ended."""
    connection = _connection(ctx)
    if not run_ids and agent is None:
        typer.echo("error: give run ids or --agent", err=True)
        raise typer.Exit(2)

    async def go() -> tuple[list[tuple[Run, list[Message]]], list[Run]] | None:
        async with connection.client() as client:
            ids = list(run_ids or [])
            if agent is not None:
                ids += [run.id for run in await _open_runs(client, agent) if run.id not in ids]
            if not ids:
                return None
            return await _tracked(client, ids, timeout, output, connection.plain)

    tracked = run_async(go)
    if tracked is None:
        typer.echo(f"error: no run of agent {agent!r} found that has not ended", err=True)
        raise typer.Exit(2)
    results, still_open = tracked
    if output == "json":
        shown = [{"run": run.model_dump(), "messages": _dumped(found)} for run, found in results]
        shown += [{"run": run.model_dump(), "messages": []} for run in still_open]
        typer.echo(json.dumps(shown, indent=2))
    if still_open:
        names = ", ".join(f"{run.id} ({run.status})" for run in still_open)
        typer.echo(f"error: gave up after {timeout:g}s; still open: {names}", err=True)
        raise typer.Exit(2)
    raise typer.Exit(_ended_code([run for run, _ in results]))


async def _tracked(
    client: RuntrackClient, ids: list[str], give_up: float | None, output: str, plain: bool
) -> tuple[list[tuple[Run, list[Message]]], list[Run]]:
    """Follow the runs through the view that fits the output: JSON, lines, or the live table."""
    if output == "json":
        return await track_view.follow(client, ids, give_up, track_view.QuietView())
    if plain or not sys.stdout.isatty():
        view: track_view.TrackView = track_view.PlainView()
        results, still_open = await track_view.follow(client, ids, give_up, view)
    else:
        live = track_view.LiveView()
        with live.shown():
            results, still_open = await track_view.follow(client, ids, give_up, live)
        view = live
    view.summary([run for run, _ in results], still_open)
    return results, still_open


async def _open_runs(client: RuntrackClient, agent: str) -> list[Run]:
    """Every run of the agent not yet ended: queued and waiting ones too, not only the running
    (a CI job tracking its just-sent runs must not pass before a worker claims them)."""
    found: list[Run] = []
    cursor: str | None = None
    while True:
        page, cursor = await client.list_runs(
            agent_id=agent, status=OPEN_STATUSES, limit=1000, after=cursor, order="asc"
        )
        found += page
        if cursor is None:
            return found


@events_app.command("tail")
def tail(
    ctx: typer.Context,
    conversation: Annotated[str | None, typer.Option(help="one conversation")] = None,
    run: Annotated[str | None, typer.Option(help="one run")] = None,
    visibility: Annotated[
        VisibilityName | None, typer.Option(help="user, operator or internal")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep following")] = False,
    last: Annotated[
        int | None,
        typer.Option(
            "--lines", "-n", min=0, help="only the last N events (-n 0 -f: from the head on)"
        ),
    ] = None,
    cursor_file: Annotated[
        Path | None, typer.Option(help="resume from, and record, the cursor")
    ] = None,
    from_oldest: Annotated[
        bool,
        typer.Option(
            "--from-oldest", help="if the cursor's events were archived, go on from the oldest kept"
        ),
    ] = False,
) -> None:
    """Print events as JSON lines; with --cursor-file a restart resumes where it stopped.

    A cursor older than the oldest kept event (archived) is an error, never a silent skip;
    --from-oldest says so on stderr and goes on from the oldest event kept."""
    connection = _connection(ctx)
    after = int(cursor_file.read_text() or 0) if cursor_file and cursor_file.exists() else 0

    async def go() -> None:
        try:
            await tail_from(after)
        except CursorExpiredError as exc:
            if not from_oldest:
                raise
            typer.echo(
                f"note: events up to {exc.resume_after} are archived"
                f"{f' (segment {exc.segment})' if exc.segment else ''}; "
                f"going on from event {exc.oldest_event_id}",
                err=True,
            )
            await tail_from(exc.resume_after)

    async def tail_from(after: int) -> None:
        async with connection.client() as client:
            only = _Only(run, conversation, visibility)
            if last is not None:
                position = await tail_last(client, after, cursor_file, only, last)
            elif not follow:
                await _print_pages(client, after, cursor_file, only)
                return
            else:
                position = after
            if not follow:
                return
            stream = client.stream(
                run_id=run, conversation_id=conversation, after=position, visibility=visibility
            )
            async for event in stream:
                typer.echo(event.model_dump_json())
                _save_cursor(cursor_file, event.id)

    run_async(go)


@dataclass(frozen=True)
class _Only:
    """What ``events tail`` without ``--follow`` keeps: the same filters as its stream."""

    run_id: str | None = None
    conversation_id: str | None = None
    visibility: str | None = None


async def tail_last(
    client: RuntrackClient, after: int, cursor_file: Path | None, only: _Only, count: int
) -> int:
    """Print the last ``count`` matching events after ``after``; return where a follow goes on.
    ``-n 0`` reads only the head (nothing old is paged through)."""
    if count == 0:
        position = max(after, await client.head())
        _save_cursor(cursor_file, position)
        return position
    kept: deque[StoredEvent] = deque(maxlen=count)
    while True:
        events, position = await client.events(
            after_event_id=after, limit=1000, run_id=only.run_id, visibility=only.visibility
        )
        kept.extend(e for e in events if only.conversation_id in (None, e.conversation_id))
        if not events:
            break
        after = position
    for event in kept:
        typer.echo(event.model_dump_json())
    _save_cursor(cursor_file, after)
    return after


async def _print_pages(
    client: RuntrackClient, after: int, cursor_file: Path | None, only: _Only = _Only()
) -> None:
    """Page through the log; the server filters by run and visibility, the conversation is
    filtered here (the log has no JSON page per conversation)."""
    while True:
        events, position = await client.events(
            after_event_id=after, limit=1000, run_id=only.run_id, visibility=only.visibility
        )
        for event in events:
            if only.conversation_id in (None, event.conversation_id):
                typer.echo(event.model_dump_json())
        _save_cursor(cursor_file, position)
        if not events:
            return
        after = position


async def _export_page(client: RuntrackClient, after: int, visibility: str | None) -> ExportPage:
    """A page of the export; a 410 says how to export what is kept and check the rest."""
    try:
        return await client.export_page(after, visibility=visibility)
    except CursorExpiredError as exc:
        if exc.code != "cursor_expired":
            raise
        typer.echo(
            f"error: {exc.message} ({exc.code}): export what is kept with --after "
            f"{exc.resume_after}, and check the archived part with its segments "
            "(audit verify --file EXPORT --archive DIR)",
            err=True,
        )
        raise typer.Exit(2) from exc


def _save_cursor(cursor_file: Path | None, position: int) -> None:
    """Write the cursor atomically, so a kill mid-write never leaves a broken file."""
    if cursor_file is None:
        return
    scratch = cursor_file.with_suffix(cursor_file.suffix + ".tmp")
    scratch.write_text(str(position))
    os.replace(scratch, cursor_file)


@events_app.command("export")
def export(
    ctx: typer.Context,
    after: Annotated[int, typer.Option(min=0, help="start after this id")] = 0,
    visibility: Annotated[
        VisibilityName | None, typer.Option(help="user, operator (default) or internal")
    ] = None,
) -> None:
    """Write the whole log (from --after) as JSON lines, in id order (an admin key).

    Your organization's events up to --visibility are written whole; every other event as its
    id and hashes only, so that ``audit verify --file`` checks the export as one chain. An
    --after older than the oldest kept event is an error (the events after it are archived).
    """
    connection = _connection(ctx)

    async def go() -> None:
        async with connection.client() as client:
            position = after
            while True:
                page = await _export_page(client, position, visibility)
                for item in page.items:
                    typer.echo(json.dumps(item, ensure_ascii=False, separators=(",", ":")))
                if not page.items:
                    return
                position = page.position

    run_async(go)
