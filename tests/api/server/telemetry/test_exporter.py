"""The exporter against a real OTLP/HTTP receiver, on both backends: the span tree of a known
run, content only with the option, the cursor moved only after the collector accepted."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from api.server.telemetry import CURSOR, OtlpTarget, TraceExporter, span_id, trace_id
from api.server.telemetry.spans import MAX_SPAN_EVENTS, time_ns
from eventstore import EventStore, NewEvent, RunStatus
from projections import RunCommands
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, attributes
from tests.waiting import eventually

from .scenario import ORG, OTHER_ORG, KnownRun, known_run

pytestmark = pytest.mark.anyio


def exporter_for(store: EventStore, receiver: OtlpReceiver, **options: Any) -> TraceExporter:
    target = OtlpTarget(receiver.url, {"x-tenant": "ops"}, service_name="runtrack-test")
    return TraceExporter(store, target, retry_base=0.01, retry_cap=0.05, **options)


async def export(store: EventStore, receiver: OtlpReceiver, **options: Any) -> TraceExporter:
    exporter = exporter_for(store, receiver, **options)
    try:
        await exporter.export_pending()
    finally:
        await exporter.aclose()
    return exporter


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), sorted(span.name for span in spans)
    return named


async def created_at(store: EventStore, run_id: str, event_type: str, last: bool = False) -> int:
    events = [e for e in await store.read_run(None, run_id) if e.event_type == event_type]
    return time_ns(events[-1 if last else 0].created_at)


async def test_a_known_run_becomes_its_span_tree(store: EventStore, receiver: OtlpReceiver) -> None:
    known = await known_run(RunCommands(store))
    await export(store, receiver)
    spans = by_name(receiver.spans)
    assert set(spans) == {
        "invoke_agent planner",
        "invoke_agent booker",
        "execute_tool search",
        "chat gpt-x",
        "chat gpt-y",
        "wait waiting_on_human",
    }
    root = spans["invoke_agent planner"]
    trace = trace_id(known.parent).to_bytes(16, "big")
    assert {span.span.trace_id for span in spans.values()} == {trace}
    assert root.span.span_id == span_id(known.parent, "run").to_bytes(8, "big")
    assert root.span.parent_span_id == b""
    for name in (
        "execute_tool search",
        "chat gpt-x",
        "wait waiting_on_human",
        "invoke_agent booker",
    ):
        assert spans[name].span.parent_span_id == root.span.span_id, name
    child = spans["invoke_agent booker"]
    assert spans["chat gpt-y"].span.parent_span_id == child.span.span_id
    assert root.resource == {"service.name": "runtrack-test", "runtrack.organization.id": ORG}
    assert receiver.headers[0]["x-tenant"] == "ops"
    await check_run_span(store, known, root, child)
    await check_children(store, known, spans)


async def check_run_span(
    store: EventStore, known: KnownRun, root: ReceivedSpan, child: ReceivedSpan
) -> None:
    assert root.attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "planner",
        "gen_ai.conversation.id": known.conversation,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "runtrack.run.id": known.parent,
        "runtrack.run.status": "failed",
        "runtrack.run.stop_reason": "error",
        "error.type": "error",
    }
    assert root.span.status.code == root.span.status.STATUS_CODE_ERROR
    assert root.span.status.message == ""  # the detail is content
    assert root.span.start_time_unix_nano == await created_at(store, known.parent, "run_created")
    assert root.span.end_time_unix_nano == await created_at(
        store, known.parent, "run_status_changed", last=True
    )
    names = [event.name for event in root.span.events]
    for name in ("checkpoint_created", "journal_updated", "human_input", "child_run_finished"):
        assert name in names
    assert child.attributes["runtrack.run.status"] == "completed"
    assert child.attributes["runtrack.run.parent_id"] == known.parent
    assert child.span.status.code == child.span.status.STATUS_CODE_UNSET


async def check_children(
    store: EventStore, known: KnownRun, spans: dict[str, ReceivedSpan]
) -> None:
    tool = spans["execute_tool search"]
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search",
        "gen_ai.tool.call.id": "call-1",
        "runtrack.run.id": known.parent,
    }
    assert tool.span.start_time_unix_nano == await created_at(store, known.parent, "tool_started")
    assert tool.span.end_time_unix_nano == await created_at(store, known.parent, "tool_finished")
    step = spans["chat gpt-x"]
    assert step.attributes["gen_ai.usage.input_tokens"] == 12
    assert step.attributes["gen_ai.usage.output_tokens"] == 5
    assert step.attributes["gen_ai.request.model"] == "gpt-x"
    ended = await created_at(store, known.parent, "step_completed")
    assert (step.span.start_time_unix_nano, step.span.end_time_unix_nano) == (
        ended - 250_000_000,
        ended,
    )
    wait = spans["wait waiting_on_human"]
    assert wait.attributes["runtrack.question.id"] == "q-1"
    assert wait.span.end_time_unix_nano > wait.span.start_time_unix_nano


async def test_content_goes_out_only_with_the_option(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    await known_run(RunCommands(store))
    await export(store, receiver)
    assert b"secret-" not in b"".join(r.SerializeToString() for r in receiver.requests)
    receiver.requests.clear()
    await export_with_content(store, receiver)


async def export_with_content(store: EventStore, receiver: OtlpReceiver) -> None:
    commands = RunCommands(store)
    known = await known_run(commands, organization="org-content")
    cursor = (await store.consumer_cursors())[CURSOR]
    await export(store, receiver, content=True)
    spans = by_name(receiver.spans)
    assert (await store.consumer_cursors())[CURSOR] > cursor
    tool = spans["execute_tool search"].attributes
    assert tool["gen_ai.tool.call.arguments"] == '{"q":"secret-argument"}'
    assert tool["gen_ai.tool.call.result"] == '{"hits":"secret-result"}'
    root = spans["invoke_agent planner"]
    assert root.span.status.message == "secret-detail"
    assert root.resource["runtrack.organization.id"] == "org-content"
    contents = [
        attribute.value.string_value
        for event in root.span.events
        for attribute in event.attributes
        if attribute.key == "runtrack.content"
    ]
    assert any("secret-objective" in text for text in contents)
    assert known.parent in root.attributes["runtrack.run.id"]


async def test_the_cursor_moves_only_after_the_collector_accepted(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    await known_run(RunCommands(store))
    head = await store.head()
    await receiver.stop()  # the collector is down: its port refuses connections
    exporter = exporter_for(store, receiver)
    passing = asyncio.create_task(exporter.export_pending())
    try:
        await eventually(lambda: exporter.failures >= 2)
        assert CURSOR not in await store.consumer_cursors()
        await receiver.start()  # up again, on the same port
        await passing
    finally:
        await exporter.aclose()
    assert (await store.consumer_cursors())[CURSOR] == head
    assert len(by_name(receiver.spans)) == 6


async def test_a_refusing_collector_gets_the_same_batch_again(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    receiver.failures = 2
    await known_run(RunCommands(store))
    exporter = await export(store, receiver)
    assert (receiver.refused, exporter.failures) == (2, 2)
    assert len(by_name(receiver.spans)) == 6
    assert (await store.consumer_cursors())[CURSOR] == await store.head()


async def test_a_wait_for_the_lane_is_a_span_of_its_own(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    commands = RunCommands(store)
    first = await commands.create(ORG, "a", conversation_id="conv-lane")
    await commands.change_status(ORG, first.run_id, RunStatus.RUNNING)
    second = await commands.create(ORG, "b", conversation_id="conv-lane")
    assert second.status == "waiting_on_lane"
    await commands.change_status(ORG, first.run_id, stop_reason="end_turn")
    claim = await commands.claim(ORG, "worker", lane_key=second.lane_key)
    assert claim is not None
    await export(store, receiver)
    [wait] = [span for span in receiver.spans if span.name == "wait waiting_on_lane"]
    assert wait.attributes["runtrack.run.id"] == second.run_id
    assert wait.span.parent_span_id == span_id(second.run_id, "run").to_bytes(8, "big")
    events = await store.read_run(None, second.run_id)
    assert wait.span.start_time_unix_nano == time_ns(events[1].created_at)
    assert wait.span.end_time_unix_nano == time_ns(events[2].created_at)
    assert events[2].payload["to"] == "running"
    assert "invoke_agent b" not in {span.name for span in receiver.spans}  # still running


async def test_spans_a_collector_rejects_in_a_2xx_are_logged_not_resent(
    store: EventStore, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.rejected = 2
    await known_run(RunCommands(store))
    exporter = await export(store, receiver)
    assert (len(receiver.requests), exporter.failures) == (1, 0)
    assert "collector rejected 2 spans: too old" in caplog.text
    assert (await store.consumer_cursors())[CURSOR] == await store.head()


async def test_a_long_runs_span_keeps_its_first_events_and_counts_the_rest(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    commands = RunCommands(store)
    run = await commands.create(ORG, "chatty")
    notes = [NewEvent("custom.note", {"n": n}) for n in range(MAX_SPAN_EVENTS + 4)]
    await commands.append(ORG, run.run_id, notes)
    await commands.change_status(ORG, run.run_id, RunStatus.CANCELLED)
    await export(store, receiver)
    [span] = receiver.spans
    assert len(span.span.events) == MAX_SPAN_EVENTS
    assert span.attributes["runtrack.events_dropped"] == 5  # 4 notes and the cancel
    assert span.span.events[0].name == "custom.note"


async def test_gzip_compressed_requests_carry_the_same_spans(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    await known_run(RunCommands(store))
    exporter = TraceExporter(store, OtlpTarget(receiver.url, gzip=True))
    try:
        await exporter.export_pending()
    finally:
        await exporter.aclose()
    assert receiver.headers[0]["content-encoding"] == "gzip"
    assert len(by_name(receiver.spans)) == 6


async def test_one_resource_spans_per_organization_in_a_request(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    commands = RunCommands(store)
    await known_run(commands)
    await known_run(commands, organization=OTHER_ORG)
    await export(store, receiver)
    [request] = receiver.requests
    organizations = [
        attributes(resource_spans.resource.attributes)["runtrack.organization.id"]
        for resource_spans in request.resource_spans
    ]
    assert sorted(organizations) == sorted([ORG, OTHER_ORG])
    assert all(len(r.scope_spans[0].spans) == 6 for r in request.resource_spans)


async def test_a_server_that_stops_leading_stops_retrying_and_leaves_the_cursor(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    await known_run(RunCommands(store))
    await receiver.stop()  # down: every attempt fails
    leading = [True]
    exporter = exporter_for(
        store, receiver, still_leader=lambda: leading.pop() if leading else False
    )
    try:
        await exporter.export_pending()  # returns: the next leader sends the batch
    finally:
        await exporter.aclose()
    assert exporter.failures == 2
    assert CURSOR not in await store.consumer_cursors()


async def test_retry_after_zero_still_waits_the_backoff_minimum(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    receiver.failures = 3
    receiver.refuse_headers = {"retry-after": "0"}
    await known_run(RunCommands(store))
    target = OtlpTarget(receiver.url)
    exporter = TraceExporter(store, target, retry_base=0.2, retry_cap=0.4)
    try:
        await exporter.export_pending()
    finally:
        await exporter.aclose()
    assert (receiver.refused, len(receiver.requests)) == (3, 1)
    gaps = [b - a for a, b in itertools.pairwise(receiver.arrivals)]
    assert len(gaps) == 3
    assert min(gaps) >= 0.1, gaps  # the jittered minimum of the first backoff: half of 0.2 s
