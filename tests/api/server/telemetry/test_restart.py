"""Restarts of the exporter: a crash while the collector holds a batch sends that batch again
(the same ids, the same spans), and a run that began before the cursor is refolded from the
log, so its span after the restart is the one an uninterrupted export makes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from api.server.telemetry import CURSOR, OtlpTarget, RunTrace, SpanOptions, TraceExporter
from eventstore import EventStore, EventType, NewEvent, RunStatus
from projections import RunCommands, RunProjection
from tests.conftest import StoreFactory
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

from .scenario import ORG, known_run

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[EventStore]:
    async with store_factory(projections=[RunProjection()]) as opened:
        yield opened


@pytest.fixture
async def receivers() -> AsyncIterator[list[OtlpReceiver]]:
    started: list[OtlpReceiver] = []
    yield started
    for receiver in started:
        if receiver.hold is not None:
            receiver.hold.set()
        await receiver.stop()


async def receiver(started: list[OtlpReceiver]) -> OtlpReceiver:
    new = await OtlpReceiver().start()
    started.append(new)
    return new


async def export(
    store: EventStore, to: OtlpReceiver, page_size: int = 512, cursor: str = CURSOR
) -> None:
    target = OtlpTarget(to.url)
    exporter = TraceExporter(store, target, page_size=page_size, retry_base=0.01, cursor=cursor)
    try:
        await exporter.export_pending()
    finally:
        await exporter.aclose()


def encoded(spans: list[ReceivedSpan]) -> dict[tuple[bytes, bytes], set[bytes]]:
    """Each span id and every distinct encoding it arrived with."""
    found: dict[tuple[bytes, bytes], set[bytes]] = {}
    for span in spans:
        found.setdefault(span.key, set()).add(span.span.SerializeToString())
    return found


async def test_a_crash_while_the_collector_holds_a_batch_sends_it_again(
    store: EventStore, receivers: list[OtlpReceiver]
) -> None:
    await known_run(RunCommands(store))
    await known_run(RunCommands(store))
    reference = await receiver(receivers)
    await export(store, reference, cursor="reference")  # an export nothing interrupts
    collector = await receiver(receivers)
    collector.hold, collector.hold_from = asyncio.Event(), 2
    crashed = TraceExporter(store, OtlpTarget(collector.url), page_size=8)
    pending = asyncio.create_task(crashed.export_pending())
    await collector.wait_for_requests(2)  # the second batch is in the collector, unanswered
    pending.cancel()  # the server dies before it reads the answer
    with pytest.raises(asyncio.CancelledError):
        await pending
    await crashed.aclose()
    collector.hold.set()
    moved = (await store.consumer_cursors()).get(CURSOR, 0)
    assert 0 < moved < await store.head()
    await export(store, collector, page_size=8)  # the restarted server
    received = encoded(collector.spans)
    assert received.keys() == encoded(reference.spans).keys()
    assert all(len(versions) == 1 for versions in received.values())  # duplicates identical
    assert len(collector.spans) > len(received)  # and the held batch did come twice


async def test_a_run_begun_before_the_cursor_is_refolded_from_the_log(
    store: EventStore, receivers: list[OtlpReceiver]
) -> None:
    commands = RunCommands(store)
    run = await commands.create(ORG, "writer")
    await commands.change_status(ORG, run.run_id, RunStatus.RUNNING)
    step = {"model": "m", "prompt_tokens": 7, "completion_tokens": 1}
    await commands.append(ORG, run.run_id, [NewEvent(EventType.STEP_COMPLETED, step)])
    before = await receiver(receivers)
    await export(store, before)  # the run is in progress: its step goes out, the run does not
    assert [span.name for span in before.spans] == ["chat m"]
    await commands.append(ORG, run.run_id, [NewEvent(EventType.STEP_COMPLETED, step)])
    await commands.change_status(ORG, run.run_id, stop_reason="end_turn")
    after = await receiver(receivers)
    await export(store, after)  # a new exporter: the restarted server
    assert [span.name for span in after.spans] == ["chat m", "invoke_agent writer"]
    run_span = after.spans[-1]
    assert run_span.attributes["gen_ai.usage.input_tokens"] == 14  # both steps, one refolded
    uninterrupted = RunTrace(run.run_id, ORG, run.run_id, SpanOptions())
    ended = [
        span
        for event in await store.read_run(None, run.run_id)
        for span in uninterrupted.feed(event)
    ]
    expected = encode_spans(ended[-1:]).resource_spans[0].scope_spans[0].spans[0]
    assert run_span.span == expected


async def test_a_resumed_run_sends_its_span_again_under_the_same_id(
    store: EventStore, receivers: list[OtlpReceiver]
) -> None:
    commands = RunCommands(store)
    known = await known_run(commands)
    kept = await receiver(receivers)
    staying = TraceExporter(store, OtlpTarget(kept.url), cursor="staying")
    refolded = await receiver(receivers)
    try:
        await staying.export_pending()  # the failed run's span
        await export(store, refolded, cursor="restarted")
        await commands.resume(ORG, known.parent)
        await commands.change_status(ORG, known.parent, RunStatus.RUNNING)
        await commands.change_status(ORG, known.parent, stop_reason="end_turn")
        await staying.export_pending()  # the same exporter: the run ended lately, in memory
    finally:
        await staying.aclose()
    await export(store, refolded, cursor="restarted")  # a new one: refolded from the log
    whole = await receiver(receivers)
    await export(store, whole, cursor="whole")  # everything in one pass

    [failed, completed] = [s for s in kept.spans if s.name == "invoke_agent planner"]
    assert failed.key == completed.key
    assert failed.attributes["runtrack.run.status"] == "failed"
    assert completed.attributes["runtrack.run.status"] == "completed"
    assert completed.span.start_time_unix_nano == failed.span.start_time_unix_nano
    assert completed.span.end_time_unix_nano > failed.span.end_time_unix_nano
    assert len(completed.span.events) > len(failed.span.events)
    assert encoded(kept.spans) == encoded(refolded.spans) == encoded(whole.spans)
