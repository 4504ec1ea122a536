"""What the exporter keeps in memory: folds within a bound in bytes and count, idle ones
evicted, tool arguments only with content and already cut, and the span events of one run
within a bound of their own. An evicted run is refolded from the log, so its spans are the ones
an exporter that kept everything sends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.server.telemetry import OtlpTarget, RunTrace, SpanOptions, TraceExporter
from api.server.telemetry.spans import MAX_CONTENT_CHARS, MAX_SPAN_EVENT_CHARS
from eventstore import EventStore, EventType, NewEvent, RunStatus
from projections import RunCommands, RunProjection
from tests.conftest import StoreFactory
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

from .scenario import ORG

pytestmark = pytest.mark.anyio
BUDGET = 65_536
RUNS = 8
NOTE = "n" * 8_000


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[EventStore]:
    async with store_factory(projections=[RunProjection()]) as opened:
        yield opened


@pytest.fixture
async def receivers() -> AsyncIterator[list[OtlpReceiver]]:
    started = [await OtlpReceiver().start(), await OtlpReceiver().start()]
    yield started
    for receiver in started:
        await receiver.stop()


def exporter(store: EventStore, to: OtlpReceiver, cursor: str, **options: Any) -> TraceExporter:
    target = OtlpTarget(to.url)
    return TraceExporter(store, target, content=True, cursor=cursor, retry_base=0.01, **options)


def encoded(spans: list[ReceivedSpan]) -> dict[tuple[bytes, bytes], bytes]:
    found = {span.key: span.span.SerializeToString() for span in spans}
    assert len(found) == len(spans)  # each span once
    return found


async def round_of(commands: RunCommands, runs: list[str], n: int) -> None:
    """A span event and an open tool call of 8 KB content for each run, interleaved."""
    for run_id in runs:
        started = {"tool_call_id": f"call-{n}", "name": "look", "arguments": {"q": NOTE}}
        events = [NewEvent("custom.note", {"text": NOTE}), NewEvent("tool_started", started)]
        await commands.append(ORG, run_id, events)


async def export_with_bounds(
    store: EventStore, receivers: list[OtlpReceiver], rounds: int, **bounds: Any
) -> TraceExporter:
    """Open runs fed a round at a time, one bounded pass after each round, then ended; the
    spans are compared with those of one pass that keeps everything."""
    commands = RunCommands(store)
    runs = [(await commands.create(ORG, f"agent{n}")).run_id for n in range(RUNS)]
    bounded = exporter(store, receivers[0], "bounded", **bounds)
    try:
        for n in range(rounds):
            await round_of(commands, runs, n)
            await bounded.export_pending()
            assert bounded.fold_bytes <= bounds.get("max_fold_bytes", BUDGET * 1000)
        for run_id in runs:
            await commands.change_status(ORG, run_id, RunStatus.CANCELLED)
        await bounded.export_pending()
    finally:
        await bounded.aclose()
    whole = exporter(store, receivers[1], "whole")
    try:
        await whole.export_pending()
    finally:
        await whole.aclose()
    assert whole.folds_evicted == 0
    assert encoded(receivers[0].spans) == encoded(receivers[1].spans)
    return bounded


async def test_folds_stay_within_their_bytes_and_evicted_runs_refold_the_same(
    store: EventStore, receivers: list[OtlpReceiver]
) -> None:
    bounded = await export_with_bounds(store, receivers, 3, max_fold_bytes=BUDGET)
    assert bounded.folds_evicted >= RUNS
    spans = receivers[0].spans
    assert len([s for s in spans if s.name == "execute_tool look"]) == 3 * RUNS  # unfinished
    run_spans = [s for s in spans if s.name.startswith("invoke_agent")]
    assert [len(s.span.events) for s in run_spans] == [3 + 1] * RUNS  # the notes, the cancel


async def test_folds_stay_within_their_count(
    store: EventStore, receivers: list[OtlpReceiver]
) -> None:
    bounded = await export_with_bounds(store, receivers, 2, max_folds=3)
    assert bounded.folds_evicted >= RUNS


async def test_a_fold_idle_past_the_limit_is_evicted(
    store: EventStore, receivers: list[OtlpReceiver]
) -> None:
    bounded = await export_with_bounds(store, receivers, 2, idle_seconds=0.0)
    assert bounded.folds_evicted >= RUNS  # every run but the last fed, each round


async def folded(store: EventStore, run_id: str, content: bool) -> RunTrace:
    trace = RunTrace(run_id, ORG, run_id, SpanOptions(content=content))
    for event in await store.read_run(None, run_id):
        trace.feed(event)
    return trace


async def test_tool_arguments_are_kept_only_with_content_and_already_cut(
    store: EventStore,
) -> None:
    commands = RunCommands(store)
    run = await commands.create(ORG, "big-arguments")
    arguments = {"blob": "a" * 100_000}
    started = {"tool_call_id": "call-1", "name": "upload", "arguments": arguments}
    await commands.append(
        ORG,
        run.run_id,
        [
            NewEvent(EventType.RUN_STATUS_CHANGED, {"to": "running"}),
            NewEvent("tool_started", started),
        ],
    )
    without = await folded(store, run.run_id, content=False)
    assert without.tools["call-1"].arguments is None
    assert without.weight < 4_096
    with_content = await folded(store, run.run_id, content=True)
    kept = with_content.tools["call-1"].arguments
    assert kept is not None
    assert len(kept) == MAX_CONTENT_CHARS + 1  # cut, and the mark of the cut
    assert MAX_CONTENT_CHARS < with_content.weight < MAX_CONTENT_CHARS + 4_096


async def test_the_span_events_of_one_run_stay_within_their_text_bound(
    store: EventStore,
) -> None:
    commands = RunCommands(store)
    run = await commands.create(ORG, "chatty")
    count = MAX_SPAN_EVENT_CHARS // MAX_CONTENT_CHARS + 8
    notes = [NewEvent("custom.note", {"text": "c" * MAX_CONTENT_CHARS}) for _ in range(count)]
    await commands.append(ORG, run.run_id, notes)
    await commands.append(ORG, run.run_id, [NewEvent("custom.small", {})])
    trace = await folded(store, run.run_id, content=True)
    assert 0 < len(trace.events) < count
    assert trace.event_chars <= MAX_SPAN_EVENT_CHARS
    assert trace.events_dropped == count + 1 - len(trace.events)  # the small one after, too
    assert trace.weight < MAX_SPAN_EVENT_CHARS + 256 * 1024
