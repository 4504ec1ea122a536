"""A LangChain callback handler that records a chain's model calls and tools in runtrack.

    handler = RuntrackCallbackHandler(client, "researcher", message="find sources")
    await agent.ainvoke(question, config={"callbacks": [handler]})

Model calls become ``step_completed`` (tokens from the message's ``usage_metadata``), tools the
tool envelope (``tool_started``, then ``tool_finished`` through ``POST …/tool-results``). On
its own the handler creates a run at each outermost LangChain run's start (or takes
``run_id=``, a queued run) and ends it with that LangChain run: ``completed`` when it ends,
``failed`` with the error when it raises. Runs are keyed by the outermost LangChain run's id,
so invocations running at once on one handler are separate runs. Inside a worker's handler
(``RuntrackCallbackHandler.in_worker(ctx)``) it records into the claimed run and leaves the
ending to the worker, which sees the exception. Async callbacks: use ``ainvoke``/``astream``
(docs/integrations.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

try:
    from langchain_core.callbacks import AsyncCallbackHandler
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGeneration, LLMResult
except ImportError as exc:  # pragma: no cover - exercised in a process without the extra
    raise ImportError(
        "api.client.adapters.langchain needs langchain-core: pip install 'runtrack[langchain]'"
    ) from exc

from api.client.adapters._tracked_run import TrackedRun, json_value
from api.client.async_client import RuntrackClient
from api.client.run_context import RunContext

__all__ = ["RuntrackCallbackHandler"]


@dataclass
class _Call:
    """A model call or tool call between its start and end callbacks."""

    began: float
    run: TrackedRun | None
    """The runtrack run the call belongs to (its outermost LangChain run's)."""
    name: str | None = None
    call_id: str = ""
    first_token: float | None = None


class RuntrackCallbackHandler(AsyncCallbackHandler):
    """LangChain callbacks → a runtrack run (see the module's docstring)."""

    def __init__(
        self,
        client: RuntrackClient,
        agent_id: str | None = None,
        *,
        run_id: str | None = None,
        heartbeat_seconds: float = 60.0,
        **run_fields: Any,
    ) -> None:
        if agent_id is None and run_id is None:
            raise ValueError("give the agent_id of the run to create, or the run_id to track")
        self.client = client
        self.agent_id = agent_id
        self.run_id = run_id
        """The runtrack run: the one given, or the last one created."""
        self.run: TrackedRun | None = None
        """The run opened last (with invocations at once, each has its own: ``_runs``)."""
        self._attach_to = run_id
        self._in_worker = False
        self._run_fields = run_fields
        self._heartbeat_seconds = heartbeat_seconds
        self._runs: dict[UUID, TrackedRun] = {}
        """Each outermost LangChain run in progress → the runtrack run it records into."""
        self._roots: dict[UUID, UUID] = {}
        """Each LangChain run in progress → its outermost run (itself for an outermost one)."""
        self._calls: dict[UUID, _Call] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def in_worker(cls, context: RunContext) -> RuntrackCallbackHandler:
        """Record into a worker's claimed run; its errors (a cancel's ``RunCancelled``) reach
        the chain, and so the handler, as any SDK call's would."""
        handler = cls(context.client, run_id=context.run_id)
        handler.run = TrackedRun.in_worker(context)
        handler.raise_error = True
        handler._in_worker = True
        return handler

    # -- the outermost LangChain run: the runtrack run's life ----------------------------------

    async def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        await self._begin(run_id, parent_run_id)

    async def on_chain_end(
        self, outputs: dict[str, Any] | Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        await self._finish(run_id, None)

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        await self._finish(run_id, _describe(error))

    async def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Not recorded itself; known so that a model called inside joins its outermost run."""
        await self._begin(run_id, parent_run_id)

    async def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        await self._finish(run_id, None)

    async def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, **kwargs: Any
    ) -> None:
        await self._finish(run_id, _describe(error))

    # -- model calls ---------------------------------------------------------------------------

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        run = await self._begin(run_id, parent_run_id)
        self._calls[run_id] = _Call(
            time.perf_counter(), run, _model_name(serialized, metadata, kwargs)
        )

    async def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        run = await self._begin(run_id, parent_run_id)
        self._calls[run_id] = _Call(
            time.perf_counter(), run, _model_name(serialized, metadata, kwargs)
        )

    async def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.get(run_id)
        if call is not None and call.first_token is None:
            call.first_token = time.perf_counter()

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is not None and call.run is not None:
            prompt, completion, model = _usage(response)
            ttft = None if call.first_token is None else int((call.first_token - call.began) * 1e9)
            await call.run.step(
                call.name or model,
                prompt,
                completion,
                duration_ms=(time.perf_counter() - call.began) * 1000,
                ttft_ns=ttft,
            )
        await self._finish(run_id, None)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._calls.pop(run_id, None)
        await self._finish(run_id, _describe(error))

    # -- tools ---------------------------------------------------------------------------------

    async def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "tool")
        call_id = str(kwargs.get("tool_call_id") or run_id)
        arguments = json_value(inputs) if inputs is not None else input_str
        await self._at_home(self._tool_started(run_id, parent_run_id, call_id, name, arguments))

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        await self._at_home(self._tool_finished(run_id, result=_tool_output(output)))

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        await self._at_home(self._tool_finished(run_id, error=_describe(error)))

    # -- plumbing ------------------------------------------------------------------------------

    async def _at_home(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the loop the handler first met: LangChain calls a sync tool's
        callbacks from its executor thread, on a loop of their own, where the client (bound to
        the caller's loop) cannot be used."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        if loop is self._loop:
            await work
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def _tool_started(
        self, run_id: UUID, parent_run_id: UUID | None, call_id: str, name: str, arguments: Any
    ) -> None:
        run = await self._begin(run_id, parent_run_id)
        self._calls[run_id] = _Call(time.perf_counter(), run, name, call_id)
        if run is not None:
            await run.tool_started(call_id, name, arguments)

    async def _begin(self, run_id: UUID, parent_run_id: UUID | None) -> TrackedRun | None:
        """The runtrack run ``run_id`` records into. A LangChain run without a parent (or
        whose parent this handler never saw) is outermost and opens one: the given run, or a
        new one per invocation (in a worker, the claimed run is open already)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        root = None if parent_run_id is None else self._roots.get(parent_run_id)
        if root is not None:
            self._roots[run_id] = root
            return self._runs.get(root)
        self._roots[run_id] = run_id
        run = self.run if self._in_worker else await self._open()
        if run is not None:
            self._runs[run_id] = run
        return run

    async def _open(self) -> TrackedRun:
        if self._attach_to is not None:
            self.run = await TrackedRun.attach(
                self.client, self._attach_to, heartbeat_seconds=self._heartbeat_seconds
            )
            return self.run
        assert self.agent_id is not None
        self.run = await TrackedRun.create(
            self.client,
            self.agent_id,
            heartbeat_seconds=self._heartbeat_seconds,
            **self._run_fields,
        )
        self.run_id = self.run.run_id
        return self.run

    async def _finish(self, run_id: UUID, error: str | None) -> None:
        """A LangChain run ended; an outermost one ends its runtrack run (when it is ours)."""
        if self._roots.pop(run_id, None) != run_id:
            return
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        await run.end(error)
        if not self._in_worker and self.run is run:
            self.run = None

    async def _tool_finished(
        self, run_id: UUID, *, result: Any = None, error: str | None = None
    ) -> None:
        call = self._calls.pop(run_id, None)
        if call is not None and call.run is not None:
            await call.run.tool_finished(
                call.call_id,
                call.name or "tool",
                duration_ms=(time.perf_counter() - call.began) * 1000,
                result=result,
                error=error,
            )
        await self._finish(run_id, error)


def _model_name(
    serialized: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
) -> str | None:
    """The model a call is made to, from what LangChain passes at its start."""
    params = extra.get("invocation_params") or {}
    for found in (
        (metadata or {}).get("ls_model_name"),
        params.get("model"),
        params.get("model_name"),
        (serialized or {}).get("name"),
    ):
        if isinstance(found, str) and found:
            return found
    return None


def _usage(response: LLMResult) -> tuple[int, int, str | None]:
    """Prompt and completion tokens (the messages' ``usage_metadata``, else the provider's
    ``token_usage``) and the model named in the response metadata."""
    prompt = completion = 0
    model: str | None = None
    for generations in response.generations:
        for generation in generations:
            if not isinstance(generation, ChatGeneration):
                continue
            message = generation.message
            usage = getattr(message, "usage_metadata", None) or {}
            prompt += int(usage.get("input_tokens", 0))
            completion += int(usage.get("output_tokens", 0))
            model = model or message.response_metadata.get("model_name")
    if prompt == completion == 0:
        token_usage = (response.llm_output or {}).get("token_usage") or {}
        prompt = int(token_usage.get("prompt_tokens", 0))
        completion = int(token_usage.get("completion_tokens", 0))
    return prompt, completion, model


def _tool_output(output: Any) -> Any:
    """A tool's result: a ``ToolMessage``'s content, else the output as JSON (or its text)."""
    if isinstance(output, BaseMessage):
        return json_value(output.content)
    return json_value(output)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
