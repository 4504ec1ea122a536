"""An OTLP/HTTP traces receiver for the exporter's tests: a real uvicorn on 127.0.0.1.

It decodes each ``ExportTraceServiceRequest`` with opentelemetry-proto, answers ``failures``
requests with ``refuse_status`` (503, with ``refuse_headers``) before accepting, answers 413
for a body past ``max_body`` bytes and 400 for a request ``bad`` picks, records when each
request arrived, and can be stopped and started again on the same port
(a collector that is down, then up).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.prompt_server import PromptServer
from tests.waiting import eventually


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector decoded it, with its resource's attributes."""

    resource: dict[str, Any]
    span: Span

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.span.trace_id, self.span.span_id)


def value(any_value: AnyValue) -> Any:
    return getattr(any_value, any_value.WhichOneof("value") or "string_value")


def attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        found[pair.key] = value(pair.value)
    return found


def spans_in(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    return [
        ReceivedSpan(attributes(resource_spans.resource.attributes), span)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


@dataclass
class OtlpReceiver:
    failures: int = 0
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    refused: int = 0
    refuse_status: int = 503
    refuse_headers: dict[str, str] = field(default_factory=dict)
    max_body: int | None = None
    """Bodies (before decompression) longer than this are answered 413, as a proxy would."""
    bad: Callable[[ExportTraceServiceRequest], bool] | None = None
    """Requests it picks are answered 400 (a collector that cannot take some span)."""
    arrivals: list[float] = field(default_factory=list)
    """``time.monotonic()`` of each request's arrival, answered or refused."""
    sizes: list[int] = field(default_factory=list)
    """Each request's body length before decompression, answered or refused."""
    too_large: int = 0
    malformed: int = 0
    hold: asyncio.Event | None = None
    """When set, each accepted request from the ``hold_from``-th on is recorded but answered
    only once the event is set (a collector that has the spans while the sender dies waiting
    for its answer)."""
    hold_from: int = 1
    rejected: int = 0
    """Spans each accepted request reports rejected (an OTLP partial success)."""
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    @property
    def spans(self) -> list[ReceivedSpan]:
        return [span for request in self.requests for span in spans_in(request)]

    async def wait_for_requests(self, count: int, within: float = 30) -> None:
        await self.wait_until(lambda: len(self.requests) >= count, within)

    async def wait_until(self, condition: Callable[[], bool], within: float = 30) -> None:
        """Return once ``condition()`` holds, checked on each request that arrives."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(condition), within)

    async def wait_for_spans(self, count: int, within: float = 30) -> list[ReceivedSpan]:
        """Every span received once at least ``count`` have arrived."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.spans) >= count), within)
        return self.spans

    async def _traces(self, request: Request) -> Response:
        body = await request.body()
        self.arrivals.append(time.monotonic())
        self.sizes.append(len(body))
        if self.max_body is not None and len(body) > self.max_body:
            self.too_large += 1
            return Response(status_code=413)
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.refused < self.failures:
            self.refused += 1
            return Response(status_code=self.refuse_status, headers=self.refuse_headers)
        decoded = ExportTraceServiceRequest.FromString(body)
        if self.bad is not None and self.bad(decoded):
            self.malformed += 1
            return Response(b"bad span", status_code=400)
        async with self.arrived:
            self.requests.append(decoded)
            self.headers.append(dict(request.headers))
            self.arrived.notify_all()
        if self.hold is not None and len(self.requests) >= self.hold_from:
            await self.hold.wait()
        answer = ExportTraceServiceResponse()
        if self.rejected:
            answer.partial_success.rejected_spans = self.rejected
            answer.partial_success.error_message = "too old"
        return Response(answer.SerializeToString(), media_type="application/x-protobuf")

    async def start(self) -> OtlpReceiver:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = PromptServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        server = self._server
        await eventually(lambda: server.started)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None
