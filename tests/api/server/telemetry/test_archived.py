"""The exporter meeting runs whose first events were archived (both backends, a real archive
directory and the real OTLP receiver): it pages the live log by the last sequence seen (never
re-reading or looping), folds the archived events in from the segments when it has them, and
otherwise folds what is live and still exports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from api.server.telemetry import CURSOR, OtlpTarget, TraceExporter, trace_id
from api.server.telemetry.spans import time_ns
from eventstore import ArchiveReader, EventStore, EventType, NewEvent, RunStatus
from projections import RunCommands
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

from .scenario import ORG

pytestmark = pytest.mark.anyio
NOTES = 1_200
"""Live events of the run before its end: more than one page of the exporter's refold."""


@dataclass(frozen=True)
class Cut:
    grandparent: str
    parent: str
    child: str
    tool_started_ns: int
    """When the child's tool call started (an archived event)."""
    directory: Path


async def archived_tree(store: EventStore, directory: Path) -> Cut:
    """Three generations of runs whose creation, and the child's tool call start, are
    archived (the store's archive cuts where it is told; ``projections.archive`` would hold it
    back for unended runs), then the child's events after the cut: its notes, the tool's result
    and its end, and a note of the parent's."""
    commands = RunCommands(store)
    grandparent = (await commands.create(ORG, "planner")).run_id
    parent = (await commands.create(ORG, "router", parent_run_id=grandparent)).run_id
    child = (await commands.create(ORG, "booker", parent_run_id=parent)).run_id
    await commands.change_status(ORG, child, RunStatus.RUNNING)
    started = {"tool_call_id": "call-1", "name": "search", "arguments": {"q": "x"}}
    await commands.append(ORG, child, [NewEvent(EventType.TOOL_STARTED, started)])
    cut = await store.head()
    await store.archive_through(cut, directory)
    notes = [NewEvent("custom.note", {"n": n}) for n in range(NOTES)]
    await commands.append(ORG, child, notes)
    await commands.record_tool_result(ORG, child, {"tool_call_id": "call-1", "name": "search"})
    await commands.change_status(ORG, child, stop_reason="end_turn")
    await commands.append(ORG, parent, [NewEvent("custom.note", {"n": 0})])
    await store.set_consumer_cursor(CURSOR, cut)  # a fresh exporter starts at the cut
    archived = ArchiveReader(directory).run_events(child, 1, cut)
    tool = next(e for e in archived if e.event_type == EventType.TOOL_STARTED)
    return Cut(grandparent, parent, child, time_ns(tool.created_at), directory)


async def export(
    store: EventStore, receiver: OtlpReceiver, archive: ArchiveReader | None
) -> dict[str, ReceivedSpan]:
    exporter = TraceExporter(store, OtlpTarget(receiver.url), retry_base=0.01, archive=archive)
    try:
        await exporter.export_pending()
    finally:
        await exporter.aclose()
    named = {span.name: span for span in receiver.spans}
    assert len(named) == len(receiver.spans), sorted(s.name for s in receiver.spans)
    return named


async def test_archived_events_are_folded_in_from_the_segments(
    store: EventStore, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    cut = await archived_tree(store, tmp_path / "archive")
    spans = await export(store, receiver, ArchiveReader(cut.directory))
    assert set(spans) == {"invoke_agent booker", "execute_tool search"}
    run, tool = spans["invoke_agent booker"], spans["execute_tool search"]
    assert tool.span.start_time_unix_nano == cut.tool_started_ns
    assert run.attributes["runtrack.run.parent_id"] == cut.parent
    expected = trace_id(cut.grandparent).to_bytes(16, "big")
    assert run.span.trace_id == tool.span.trace_id == expected


async def test_without_the_segments_what_is_live_is_exported(
    store: EventStore, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    cut = await archived_tree(store, tmp_path / "archive")
    spans = await export(store, receiver, None)
    assert set(spans) == {"invoke_agent unknown", "execute_tool search"}
    tool = spans["execute_tool search"]
    assert tool.span.start_time_unix_nano > cut.tool_started_ns  # its start was archived
    assert (await store.consumer_cursors())[CURSOR] == await store.head()
