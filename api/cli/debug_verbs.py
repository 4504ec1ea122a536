"""``runtrack debug conversation ID``: a conversation's runs, in order, with everything they wrote.

One dump to read or attach to a bug report: each run's detail lines (``api.cli.run_detail``),
its events, its tool results and checkpoints, and with ``--children`` its child runs below it
(recursively). Composed from the client's reads (runs by conversation, a run's events): the
server needs no route of its own for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from api.cli.client_verbs import Output, _connection, run_async
from api.cli.run_detail import children_of, detail_lines
from api.client import RuntrackClient
from api.client.models import Run, StoredEvent

__all__ = ["Dumped", "debug_app", "dump_conversation"]

debug_app = typer.Typer(no_args_is_help=True, help="Dump what runs did, for debugging.")


@dataclass
class Dumped:
    """One run with its events and, when asked for, its children (each a ``Dumped``)."""

    run: Run
    events: list[StoredEvent]
    children: list[Dumped] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run.model_dump(),
            "events": [event.model_dump() for event in self.events],
            "tool_results": [e.payload for e in self.events if e.event_type == "tool_finished"],
            "checkpoints": [_checkpoint(e) for e in self.events if _is_checkpoint(e)],
            "children": [child.as_json() for child in self.children],
        }


@debug_app.command("conversation")
def conversation(
    ctx: typer.Context,
    conversation_id: str,
    children: Annotated[
        bool, typer.Option("--children", help="also dump each run's child runs")
    ] = False,
    output: Output = "table",
) -> None:
    """Dump a conversation's runs in order with their events, tool results and checkpoints."""
    connection = _connection(ctx)

    async def go() -> list[Dumped]:
        async with connection.client() as client:
            return await dump_conversation(client, conversation_id, children)

    dumped = run_async(go)
    if not dumped:  # an unknown id, or one of another organization: nothing to dump
        typer.echo(f"error: conversation {conversation_id!r} has no run", err=True)
        raise typer.Exit(2)
    if output == "json":
        runs = [entry.as_json() for entry in dumped]
        typer.echo(json.dumps({"conversation_id": conversation_id, "runs": runs}, indent=2))
        return
    typer.echo(f"conversation {conversation_id}: {len(dumped)} runs")
    now = datetime.now(UTC)
    for entry in dumped:
        for line in _text(entry, now, ""):
            typer.echo(line)


async def dump_conversation(
    client: RuntrackClient, conversation_id: str, with_children: bool
) -> list[Dumped]:
    """The conversation's runs, oldest first, each with its events (and children)."""
    return [await _dump(client, run, with_children) for run in await _runs(client, conversation_id)]


async def _runs(client: RuntrackClient, conversation_id: str) -> list[Run]:
    found: list[Run] = []
    cursor: str | None = None
    while True:
        page, cursor = await client.list_runs(
            conversation_id=conversation_id, limit=1000, after=cursor, order="asc"
        )
        found += page
        if cursor is None:
            return found


async def _dump(client: RuntrackClient, run: Run, with_children: bool) -> Dumped:
    events = await _events(client, run.id)
    if not with_children:
        return Dumped(run, events)
    below = await children_of(client, run)
    return Dumped(run, events, [await _dump(client, child, True) for child in below])


async def _events(client: RuntrackClient, run_id: str) -> list[StoredEvent]:
    """Every event the key may see: the server caps ``internal`` at the key's role, and a
    debugging dump wants checkpoints (internal) too."""
    found: list[StoredEvent] = []
    after = 0
    while True:
        page, after = await client.events(
            after_event_id=after, limit=1000, run_id=run_id, visibility="internal"
        )
        if not page:
            return found
        found += page


def _text(entry: Dumped, now: datetime, indent: str) -> list[str]:
    """A run's block: a header, its detail lines, its events, tool results and checkpoints."""
    run = entry.run
    lines = ["", f"{indent}run {run.id} ({run.agent_id}, {run.status})"]
    lines += [f"{indent}  {label}: {value}" for label, value in detail_lines(run, [], now)]
    if run.child_run_ids:
        lines.append(f"{indent}  child runs: {', '.join(run.child_run_ids)}")
    lines.append(f"{indent}  events:")
    lines += [f"{indent}    {_event(event)}" for event in entry.events]
    tools = [event for event in entry.events if event.event_type == "tool_finished"]
    if tools:
        lines.append(f"{indent}  tool results:")
        lines += [f"{indent}    {_tool_result(event.payload)}" for event in tools]
    checkpoints = [_checkpoint(event) for event in entry.events if _is_checkpoint(event)]
    if checkpoints:
        lines.append(f"{indent}  checkpoints:")
        lines += [
            f"{indent}    {c['checkpoint_id']} ({c['kind']}) #{c['event_id']}" for c in checkpoints
        ]
    for child in entry.children:
        lines += _text(child, now, indent + "    ")
    return lines


def _event(event: StoredEvent) -> str:
    payload = json.dumps(event.payload, sort_keys=True, separators=(",", ":"))
    return f"#{event.id} {event.created_at} {event.visibility} {event.event_type} {payload}"


def _tool_result(payload: dict[str, Any]) -> str:
    outcome = payload.get("error") if payload.get("status") == "error" else payload.get("result")
    said = json.dumps(outcome, sort_keys=True, separators=(",", ":"))
    status = payload.get("status", "success")
    return f"{payload.get('name')} {payload.get('tool_call_id')} {status}: {said}"


def _is_checkpoint(event: StoredEvent) -> bool:
    return event.event_type == "checkpoint_created"


def _checkpoint(event: StoredEvent) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "created_at": event.created_at,
        "checkpoint_id": event.payload.get("checkpoint_id"),
        "kind": event.payload.get("kind"),
    }
