"""The exporter against a collector with limits: requests within a size, split on a 413, a span
too large trimmed, and a span the collector refuses as bad dropped after its attempts (or held
on to, when told to), without holding back every other span."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from api.server.runner import check_settings
from api.server.settings import Settings
from api.server.telemetry import CURSOR, OtlpTarget, TraceExporter
from api.server.telemetry.spans import MAX_CONTENT_CHARS
from eventstore import EventStore, EventType, NewEvent, RunStatus
from projections import RunCommands
from tests.otlp_receiver import OtlpReceiver, spans_in

from .scenario import ORG, OTHER_ORG, known_run

pytestmark = pytest.mark.anyio
LIMIT = 65_536
WITHIN = 60.0
"""A pass that never ends (the old exporter resent a refused request forever) fails here."""


async def export(store: EventStore, receiver: OtlpReceiver, **options: Any) -> TraceExporter:
    options = {"retry_base": 0.01, "retry_cap": 0.02, **options}
    exporter = TraceExporter(store, OtlpTarget(receiver.url), **options)
    try:
        await asyncio.wait_for(exporter.export_pending(), WITHIN)
    finally:
        await exporter.aclose()
    return exporter


async def tool_heavy_run(commands: RunCommands, tools: int, organization: str = ORG) -> str:
    """A run of ``tools`` tool calls, each with a result of the longest content kept."""
    run = await commands.create(organization, "reader")
    await commands.change_status(organization, run.run_id, RunStatus.RUNNING)
    for n in range(tools):
        started = {"tool_call_id": f"call-{n}", "name": f"read{n}", "arguments": {"n": n}}
        await commands.append(organization, run.run_id, [NewEvent("tool_started", started)])
        finished = {**started, "result": "x" * MAX_CONTENT_CHARS}
        del finished["arguments"]
        await commands.record_tool_result(organization, run.run_id, finished)
    await commands.change_status(organization, run.run_id, stop_reason="end_turn")
    return run.run_id


def names(receiver: OtlpReceiver) -> list[str]:
    return sorted(span.name for span in receiver.spans)


def expected_tools(tools: int) -> list[str]:
    return sorted([f"execute_tool read{n}" for n in range(tools)] + ["invoke_agent reader"])


async def test_a_page_past_the_request_limit_goes_in_requests_within_it(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    await tool_heavy_run(RunCommands(store), 12)  # about 200 KB of results
    exporter = await export(store, receiver, content=True, max_request_bytes=LIMIT)
    assert len(receiver.requests) >= 3
    assert max(receiver.sizes) <= LIMIT
    assert names(receiver) == expected_tools(12)  # each span once
    assert (exporter.failures, exporter.spans_trimmed) == (0, 0)
    assert (await store.consumer_cursors())[CURSOR] == await store.head()


async def test_a_request_refused_as_too_large_is_halved_until_taken(
    store: EventStore, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.max_body = LIMIT
    await tool_heavy_run(RunCommands(store), 12)
    exporter = await export(store, receiver, content=True)  # the default limit, 4 MiB
    assert receiver.too_large >= 1
    assert names(receiver) == expected_tools(12)
    taken = [size for size in receiver.sizes if size <= LIMIT]
    assert len(taken) == len(receiver.requests)
    assert exporter.failures == receiver.too_large
    assert "requests are now at most" in caplog.text
    assert (await store.consumer_cursors())[CURSOR] == await store.head()


async def test_a_span_larger_than_a_request_is_trimmed_and_logged(
    store: EventStore, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    commands = RunCommands(store)
    run = await commands.create(ORG, "chatty")
    notes = [NewEvent("custom.note", {"text": "y" * 2_000, "n": n}) for n in range(400)]
    await commands.append(ORG, run.run_id, notes)
    await commands.change_status(ORG, run.run_id, RunStatus.CANCELLED)
    exporter = await export(store, receiver, content=True, max_request_bytes=LIMIT)
    [span] = receiver.spans
    assert max(receiver.sizes) <= LIMIT
    assert span.attributes["runtrack.trimmed"] is True
    kept = len(span.span.events)
    assert 0 < kept < 401  # of the notes and the cancel, the first ones are kept
    assert span.attributes["runtrack.events_dropped"] == 401 - kept
    assert span.span.events[0].name == "custom.note"
    content = [a.value.string_value for a in span.span.events[0].attributes]
    assert max(len(text) for text in content) <= 257  # cut to 256 characters and the mark
    assert exporter.spans_trimmed == 1
    assert "larger than a request may be" in caplog.text


def with_poison(request: ExportTraceServiceRequest) -> bool:
    return any(span.name == "execute_tool poison" for span in spans_in(request))


async def poisoned_run(commands: RunCommands) -> None:
    run = await commands.create(OTHER_ORG, "victim")
    call = {"tool_call_id": "call-p", "name": "poison"}
    await commands.append(
        OTHER_ORG,
        run.run_id,
        [NewEvent(EventType.RUN_STATUS_CHANGED, {"to": "running"}), NewEvent("tool_started", call)],
    )
    await commands.record_tool_result(OTHER_ORG, run.run_id, {**call, "result": 1})
    await commands.change_status(OTHER_ORG, run.run_id, stop_reason="end_turn")


async def test_a_span_the_collector_refuses_as_bad_is_dropped_after_its_attempts(
    store: EventStore, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.bad = with_poison
    commands = RunCommands(store)
    await known_run(commands)
    await poisoned_run(commands)
    await known_run(commands, organization="org-late")
    with caplog.at_level(logging.ERROR, "runtrack.telemetry"):
        exporter = await export(store, receiver, drop_after=3)
    got = names(receiver)
    assert "execute_tool poison" not in got
    assert got.count("invoke_agent planner") == 2
    assert "invoke_agent victim" in got
    assert len(got) == 13  # every span but the refused one, each once
    assert exporter.spans_dropped == 1
    assert "refused span 'execute_tool poison'" in caplog.text
    assert "3 times: dropped" in caplog.text
    assert (await store.consumer_cursors())[CURSOR] == await store.head()


async def test_with_drop_after_zero_a_refused_span_holds_the_export(
    store: EventStore, receiver: OtlpReceiver
) -> None:
    receiver.bad = with_poison
    await poisoned_run(RunCommands(store))
    checks = iter(range(8))
    exporter = await export(
        store, receiver, drop_after=0, still_leader=lambda: next(checks, None) is not None
    )
    assert exporter.spans_dropped == 0
    assert receiver.malformed >= 6  # it kept trying that span, never giving up
    assert "execute_tool poison" not in names(receiver)
    assert CURSOR not in await store.consumer_cursors()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"otel_max_request_bytes": 1_000}, "--otel-max-request-bytes must be at least 16384"),
        ({"otel_drop_after": -1}, "--otel-drop-after must be 0"),
    ],
)
def test_limits_that_cannot_work_stop_the_server_at_start(
    change: dict[str, int], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        check_settings(Settings(**change))  # type: ignore[arg-type]
