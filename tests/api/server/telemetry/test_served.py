"""The exporter as a server runs it: its options reach it, and ``/metrics`` counts the spans it
sent, trimmed and dropped, so that an operator sees a span given up without reading the log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.server.settings import Settings
from tests.api.conftest import LiveServer, start_server
from tests.otlp_receiver import OtlpReceiver, spans_in
from tests.waiting import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    started = await OtlpReceiver().start()
    started.bad = lambda request: any(s.name == "execute_tool poison" for s in spans_in(request))
    yield started
    await started.stop()


@pytest.fixture
async def live(
    tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LiveServer]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url)
    settings = Settings(
        database=str(tmp_path / "otel.db"),
        leader_interval=0.1,
        otel_content=True,
        otel_drop_after=1,
        otel_max_request_bytes=16_384,
    )
    server = await start_server(settings)
    yield server
    await server.stop()


async def ended_run(client: httpx.AsyncClient, agent: str, tool: str, result: str) -> None:
    run = (await client.post("/v1/runs", json={"agent_id": agent})).json()
    await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    events = [
        ("tool_started", {"tool_call_id": "c1", "name": tool, "arguments": {}}),
        ("tool_finished", {"tool_call_id": "c1", "name": tool, "result": result}),
        ("run_status_changed", {"stop_reason": "end_turn"}),
    ]
    body = {"events": [{"event_type": kind, "payload": payload} for kind, payload in events]}
    assert (await client.post(f"/v1/runs/{run['id']}/events", json=body)).status_code == 201


async def counts(live: LiveServer) -> dict[str, float]:
    async with live.client() as client:
        text = (await client.get("/metrics")).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("runtrack_otel_")
    }


async def test_metrics_count_the_spans_sent_trimmed_and_dropped(
    live: LiveServer, receiver: OtlpReceiver
) -> None:
    async with live.client() as client:
        await ended_run(client, "victim", "poison", "ok")
        await ended_run(client, "reader", "read", "r" * 60_000)  # one span past 16 KiB alone
        await ended_run(client, "after", "noop", "ok")
    await receiver.wait_until(lambda: "invoke_agent after" in {s.name for s in receiver.spans})
    exporter = live.app.state.services.exporter
    await eventually(lambda: exporter.spans_sent >= 5)  # it has read the last answer too
    found = await counts(live)
    assert found["runtrack_otel_spans_dropped_total"] == 1.0  # otel_drop_after=1
    assert found["runtrack_otel_spans_trimmed_total"] == 1.0  # otel_max_request_bytes
    assert found["runtrack_otel_spans_sent_total"] == 5.0  # three runs and two tools
    assert found["runtrack_otel_requests_failed_total"] == receiver.malformed
    [read] = [s for s in receiver.spans if s.name == "execute_tool read"]
    assert read.attributes["runtrack.trimmed"] is True
    assert max(receiver.sizes) <= 16_384
