"""An OpenAI Agents SDK tracing processor that records each agent trace as a runtrack run.

    processor = RuntrackTracingProcessor("http://127.0.0.1:8000", key="rtk_…")
    set_trace_processors([processor])      # or add_trace_processor, to keep OpenAI's export
    await Runner.run(agent, "question")
    processor.force_flush()                # the run is recorded up to the trace's end

A trace's first agent span creates the run (its agent id is the agent's name unless
``agent_id=`` is given; the trace's ``group_id`` is its conversation), or attaches to the run
named by the trace metadata ``runtrack_run_id``. Generation and response spans become
``step_completed`` with their usage, function spans the tool envelope, an agent span's error
fails the run, and the trace's end completes it, when the processor started the run: a run a
worker claimed is ended by its worker. The SDK calls a processor synchronously and asks it to
return quickly, so the calls are queued and sent in order from a thread of the processor's
own. docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

try:
    from agents.tracing import (
        AgentSpanData,
        FunctionSpanData,
        GenerationSpanData,
        ResponseSpanData,
        Span,
        Trace,
        TracingProcessor,
    )
except ImportError as exc:  # pragma: no cover - exercised in a process without the extra
    raise ImportError(
        "api.client.adapters.openai_agents needs openai-agents: "
        "pip install 'runtrack[openai-agents]'"
    ) from exc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from api.client.adapters._tracked_run import TrackedRun, json_value
from api.client.async_client import RuntrackClient

__all__ = ["RUN_ID_METADATA", "RuntrackTracingProcessor"]

RUN_ID_METADATA = "runtrack_run_id"
"""The trace metadata key naming an existing run to record into (``RunConfig.trace_metadata``)."""
logger = logging.getLogger("runtrack.adapters")
Work = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class _TraceRun:
    """What the processor knows of one trace, on its own thread only."""

    group_id: str | None
    metadata: dict[str, Any]
    run: TrackedRun | None = None
    untracked: bool = False
    """Creating or attaching the run failed: the trace's spans are dropped."""
    error: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    """Open function spans: span id → tool name."""


class RuntrackTracingProcessor(TracingProcessor):
    """Agents SDK traces → runtrack runs (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        agent_id: str | None = None,
        heartbeat_seconds: float = 60.0,
    ) -> None:
        self.agent_id = agent_id
        self._heartbeat_seconds = heartbeat_seconds
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._client, self._queue, self._loop = self._portal.call(_open, url, key)
        self._consumer = self._portal.start_task_soon(self._consume)
        self._traces: dict[str, _TraceRun] = {}
        self._held: dict[str, Callable[[], None]] = {}
        """Function spans started whose start is not yet queued (``_hold_tool_start``)."""
        self._holding = threading.Lock()
        self._closed = False

    # -- the SDK's calls: queued, never blocking the agent -------------------------------------

    def on_trace_start(self, trace: Trace) -> None:
        exported = trace.export() or {}
        metadata = dict(exported.get("metadata") or {})
        self._submit(
            lambda: self._trace_started(trace.trace_id, exported.get("group_id"), metadata)
        )

    def on_trace_end(self, trace: Trace) -> None:
        self._submit(lambda: self._trace_ended(trace.trace_id))

    def on_span_start(self, span: Span[Any]) -> None:
        data = span.span_data
        if isinstance(data, AgentSpanData):
            self._submit(lambda: self._agent_started(span.trace_id, data.name))
        elif isinstance(data, FunctionSpanData):
            self._hold_tool_start(span, data)

    def on_span_end(self, span: Span[Any]) -> None:
        data, error = span.span_data, _describe(span.error)
        duration_ms = _duration_ms(span.started_at, span.ended_at)
        if isinstance(data, AgentSpanData) and error is not None:
            self._submit(lambda: self._agent_failed(span.trace_id, error))
        elif isinstance(data, FunctionSpanData):
            self._release_tool_start(span.span_id)
            result = json_value(data.output)
            self._submit(
                lambda: self._tool_finished(span.trace_id, span.span_id, duration_ms, result, error)
            )
        elif isinstance(data, GenerationSpanData | ResponseSpanData) and error is None:
            model, prompt, completion = _usage(data)
            self._submit(lambda: self._step(span.trace_id, model, prompt, completion, duration_ms))

    def force_flush(self) -> None:
        """Wait until everything reported so far is recorded."""
        for span_id in list(self._held):
            self._release_tool_start(span_id)
        if not self._closed:
            self._portal.call(self._queue.join)

    def shutdown(self) -> None:
        """Record what is queued, then stop the thread and close the client."""
        if self._closed:
            return
        self.force_flush()
        self._closed = True
        self._consumer.cancel()
        self._portal.call(self._client.aclose)
        self._portal_cm.__exit__(None, None, None)

    def _hold_tool_start(self, span: Span[Any], data: FunctionSpanData) -> None:
        """The SDK fills a function span's input just after starting it, before its first
        ``await``: the start is recorded at the loop's next turn (or at the span's end, or a
        flush, whichever comes first), when the arguments are there to be read."""

        def start() -> None:
            arguments = _arguments(data.input)
            self._submit(
                lambda: self._tool_started(span.trace_id, span.span_id, data.name, arguments)
            )

        with self._holding:
            self._held[span.span_id] = start
        try:
            asyncio.get_running_loop().call_soon(self._release_tool_start, span.span_id)
        except RuntimeError:  # no loop: nothing can run before the input is set
            self._release_tool_start(span.span_id)

    def _release_tool_start(self, span_id: str) -> None:
        with self._holding:
            start = self._held.pop(span_id, None)
        if start is not None:
            start()

    # -- on the processor's thread, one at a time ----------------------------------------------

    def _submit(self, work: Work) -> None:
        if not self._closed:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, work)

    async def _consume(self) -> None:
        while True:
            work = await self._queue.get()
            try:
                await work()
            except Exception:
                logger.warning("runtrack: an Agents SDK event was not recorded", exc_info=True)
            finally:
                self._queue.task_done()

    async def _trace_started(self, trace_id: str, group_id: Any, metadata: dict[str, Any]) -> None:
        group = group_id if isinstance(group_id, str) and group_id else None
        self._traces[trace_id] = _TraceRun(group, metadata)

    async def _agent_started(self, trace_id: str, agent_name: str) -> None:
        trace = self._traces.setdefault(trace_id, _TraceRun(None, {}))
        if trace.run is not None or trace.untracked:
            return  # a handoff or a nested agent: the same run
        trace.untracked = True  # until the run exists
        attach = trace.metadata.get(RUN_ID_METADATA)
        if isinstance(attach, str):
            trace.run = await TrackedRun.attach(
                self._client, attach, heartbeat_seconds=self._heartbeat_seconds
            )
        else:
            trace.run = await TrackedRun.create(
                self._client,
                self.agent_id or agent_name,
                heartbeat_seconds=self._heartbeat_seconds,
                conversation_id=trace.group_id,
                metadata={"openai_trace_id": trace_id},
            )
        trace.untracked = False

    async def _agent_failed(self, trace_id: str, error: str) -> None:
        trace = self._traces.get(trace_id)
        if trace is not None and trace.error is None:
            trace.error = error

    async def _tool_started(self, trace_id: str, span_id: str, name: str, arguments: Any) -> None:
        run = self._run(trace_id)
        if run is not None:
            self._traces[trace_id].tools[span_id] = name
            await run.tool_started(span_id, name, arguments)

    async def _tool_finished(
        self, trace_id: str, span_id: str, duration_ms: float | None, result: Any, error: str | None
    ) -> None:
        run = self._run(trace_id)
        name = self._traces[trace_id].tools.pop(span_id, None) if run is not None else None
        if run is not None and name is not None:
            await run.tool_finished(
                span_id, name, duration_ms=duration_ms or 0.0, result=result, error=error
            )

    async def _step(
        self, trace_id: str, model: str | None, prompt: int, completion: int, duration: float | None
    ) -> None:
        run = self._run(trace_id)
        if run is not None:
            await run.step(model, prompt, completion, duration_ms=duration)

    async def _trace_ended(self, trace_id: str) -> None:
        trace = self._traces.pop(trace_id, None)
        if trace is not None and trace.run is not None:
            await trace.run.end(trace.error)

    def _run(self, trace_id: str) -> TrackedRun | None:
        trace = self._traces.get(trace_id)
        return None if trace is None else trace.run


async def _open(
    url: str, key: str | None
) -> tuple[RuntrackClient, asyncio.Queue[Work], asyncio.AbstractEventLoop]:
    """The client, the queue and the loop, made on the processor's thread where they live."""
    return RuntrackClient(url, key), asyncio.Queue(), asyncio.get_running_loop()


def _arguments(text: str | None) -> Any:
    """A function span's input: the model's JSON arguments, parsed when they parse."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _usage(data: GenerationSpanData | ResponseSpanData) -> tuple[str | None, int, int]:
    """The model and its input and output tokens, as each span type carries them."""
    if isinstance(data, GenerationSpanData):
        usage = data.usage or {}
        return data.model, int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    response = data.response
    if response is not None and response.usage is not None:
        return response.model, response.usage.input_tokens, response.usage.output_tokens
    usage = data.usage or {}
    model = None if response is None else response.model
    return model, int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


def _duration_ms(started: str | None, ended: str | None) -> float | None:
    if started is None or ended is None:
        return None
    delta = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
    return max(0.0, delta.total_seconds() * 1000)


def _describe(error: Any) -> str | None:
    """A span error (``{"message", "data"}``) as a run's error detail."""
    if not error:
        return None
    message = str(error.get("message") or "error")
    data = error.get("data") or {}
    cause = data.get("error") if isinstance(data, dict) else None
    return f"{message}: {cause}" if cause else message
