"""``runtrack serve`` with the standard OTEL variables: a real server process exports a run's
spans to a real OTLP/HTTP receiver, and a server killed while the collector holds a batch sends
it again after its restart, with the same ids and encodings."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.otlp_receiver import OtlpReceiver, spans_in

from .conftest import ProcessFactory

pytestmark = pytest.mark.anyio
NAMES = {"invoke_agent writer", "execute_tool fetch", "chat gpt-z"}


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    started = await OtlpReceiver(hold=asyncio.Event()).start()
    yield started
    assert started.hold is not None
    started.hold.set()
    await started.stop()


async def failed_run(client: httpx.AsyncClient) -> str:
    run = (await client.post("/v1/runs", json={"agent_id": "writer"})).json()
    await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    events = [
        ("step_completed", {"model": "gpt-z", "prompt_tokens": 4, "completion_tokens": 2}),
        ("tool_started", {"tool_call_id": "c1", "name": "fetch", "arguments": {"url": "u"}}),
        ("tool_finished", {"tool_call_id": "c1", "name": "fetch", "result": "page"}),
        ("run_status_changed", {"stop_reason": "error", "detail": "boom"}),
    ]
    body = {"events": [{"event_type": kind, "payload": payload} for kind, payload in events]}
    assert (await client.post(f"/v1/runs/{run['id']}/events", json=body)).status_code == 201
    return str(run["id"])


async def test_a_killed_server_resends_the_held_batch_after_restart(
    server_process: ProcessFactory, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k%201")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agents")
    args = ("--leader-interval", "0.1", "--otel-content")
    first = await server_process(*args)
    async with httpx.AsyncClient(base_url=first.url) as client:
        run_id = await failed_run(client)
    await receiver.wait_for_requests(1)  # held: the collector has it, the server no answer
    await first.signal(signal.SIGKILL)
    assert receiver.hold is not None
    receiver.hold.set()
    held = {span.key for span in receiver.spans}

    await server_process(*args, database=first.database, port=first.port)
    await receiver.wait_until(lambda: len(receiver.requests) >= 2 and names(receiver) == NAMES)
    encodings: dict[tuple[bytes, bytes], set[bytes]] = {}
    for span in receiver.spans:
        encodings.setdefault(span.key, set()).add(span.span.SerializeToString())
    assert all(len(found) == 1 for found in encodings.values())  # duplicates are identical
    again = {span.key for request in receiver.requests[1:] for span in spans_in(request)}
    assert held <= again  # what the dead server never heard accepted came again
    run_span = next(s for s in receiver.spans if s.name == "invoke_agent writer")
    assert run_span.attributes["runtrack.run.id"] == run_id
    assert run_span.resource == {"service.name": "agents", "runtrack.organization.id": "default"}
    assert run_span.span.status.message == "boom"  # --otel-content
    tool = next(s for s in receiver.spans if s.name == "execute_tool fetch")
    assert tool.attributes["gen_ai.tool.call.result"] == "page"
    assert receiver.headers[-1]["x-collector-key"] == "k 1"


def names(receiver: OtlpReceiver) -> set[str]:
    return {span.name for span in receiver.spans}
