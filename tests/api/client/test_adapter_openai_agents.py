"""The Agents SDK tracing processor against a real server, with a fake ``Model`` written here
(no network; the SDK's own export to OpenAI replaced): the run holds the generations as
steps with usage, the function calls with arguments and results, and the ending."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool, set_trace_processors
from agents.items import ModelResponse, TResponseOutputItem
from agents.models.interface import Model, ModelTracing
from agents.tracing import generation_span
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from api.client import RunContext, RuntrackClient, Worker
from api.client.adapters.openai_agents import RUN_ID_METADATA, RuntrackTracingProcessor
from tests.api.client.recorded import events_of, of_type
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


class FakeModel(Model):
    """Answers with the given outputs in turn (an exception is raised), reporting each call as
    a generation span with usage, as the SDK's Chat Completions model does."""

    def __init__(self, *turns: list[TResponseOutputItem] | Exception) -> None:
        self.turns = list(turns)

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any = None,
    ) -> ModelResponse:
        with generation_span(model="fake-4o", disabled=tracing.is_disabled()) as span:
            turn = self.turns.pop(0)
            if isinstance(turn, Exception):
                raise turn
            span.span_data.usage = {"input_tokens": 30, "output_tokens": 4}
            usage = Usage(requests=1, input_tokens=30, output_tokens=4, total_tokens=34)
            return ModelResponse(output=turn, usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def calls(name: str, arguments: dict[str, Any]) -> list[TResponseOutputItem]:
    call = ResponseFunctionToolCall(
        type="function_call", name=name, call_id=f"call-{name}", arguments=json.dumps(arguments)
    )
    return [call]


def says(text: str) -> list[TResponseOutputItem]:
    content = ResponseOutputText(type="output_text", text=text, annotations=[])
    message = ResponseOutputMessage(
        id="msg-1", type="message", role="assistant", status="completed", content=[content]
    )
    return [message]


@function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@function_tool
def lookup(city: str) -> str:
    """The weather in a city."""
    raise LookupError(f"no weather for {city}")


@pytest.fixture
def processor(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-used")
    processor = RuntrackTracingProcessor(live.url)
    set_trace_processors([processor])  # instead of the SDK's export to OpenAI
    yield processor
    set_trace_processors([])
    processor.shutdown()


async def flushed(processor: RuntrackTracingProcessor) -> None:
    """``force_flush`` off this loop, which serves the server the processor sends to."""
    await asyncio.to_thread(processor.force_flush)


async def only_run(client: RuntrackClient, agent_id: str) -> Any:
    (run,), _ = await client.list_runs(agent_id=agent_id)
    return run


async def test_an_agent_with_a_function_call_is_a_completed_run(
    client: RuntrackClient, processor: RuntrackTracingProcessor
) -> None:
    agent = Agent(
        name="adder", model=FakeModel(calls("add", {"a": 2, "b": 3}), says("5")), tools=[add]
    )
    result = await Runner.run(agent, "2 + 3?", run_config=RunConfig(group_id="conv-agents"))
    assert result.final_output == "5"
    await flushed(processor)
    run = await only_run(client, "adder")
    assert (run.status, run.stop_reason, run.conversation_id) == (
        "completed",
        "end_turn",
        "conv-agents",
    )
    assert (run.num_steps, run.prompt_tokens, run.completion_tokens) == (2, 60, 8)
    events = await events_of(client, run.id)
    assert [s["model"] for s in of_type(events, "step_completed")] == ["fake-4o", "fake-4o"]
    (started,) = of_type(events, "tool_started")
    assert (started["name"], started["arguments"]) == ("add", {"a": 2, "b": 3})
    (finished,) = of_type(events, "tool_finished")
    assert (finished["tool_call_id"], finished["status"], finished["result"]) == (
        started["tool_call_id"],
        "success",
        5,
    )
    statuses = [p["to"] for p in of_type(events, "run_status_changed")]
    assert statuses == ["running", "waiting_on_tool", "running", "completed"]


async def test_a_failing_tool_is_an_error_result_and_the_run_goes_on(
    client: RuntrackClient, processor: RuntrackTracingProcessor
) -> None:
    model = FakeModel(calls("lookup", {"city": "Oslo"}), says("I could not look it up"))
    await Runner.run(Agent(name="weather", model=model, tools=[lookup]), "Oslo?")
    await flushed(processor)
    run = await only_run(client, "weather")
    assert run.status == "completed"  # the SDK gave the error to the model, which answered
    (finished,) = of_type(await events_of(client, run.id), "tool_finished")
    assert finished["status"] == "error"
    # What the span says: the SDK keeps a tool's exception out of its traces.
    assert finished["error"].startswith("Error running tool (non-fatal)")


async def test_a_model_error_fails_the_run_with_the_error(
    client: RuntrackClient, processor: RuntrackTracingProcessor
) -> None:
    agent = Agent(name="broken", model=FakeModel(RuntimeError("model unavailable")))
    with pytest.raises(RuntimeError, match="model unavailable"):
        await Runner.run(agent, "hello")
    await flushed(processor)
    run = await only_run(client, "broken")
    assert (run.status, run.stop_reason) == ("failed", "error")
    assert run.error == "Error in agent run: model unavailable"


async def test_a_queued_run_named_in_the_trace_metadata_is_the_one_recorded(
    client: RuntrackClient, processor: RuntrackTracingProcessor
) -> None:
    queued = await client.create_run("support", message="where is my order?")
    config = RunConfig(trace_metadata={RUN_ID_METADATA: queued.id})
    await Runner.run(
        Agent(name="Support agent", model=FakeModel(says("on its way"))), "?", run_config=config
    )
    await flushed(processor)
    run = await client.get_run(queued.id)
    assert (run.status, run.num_steps) == ("completed", 1)
    runs, _ = await client.list_runs()
    assert len(runs) == 1  # attached, not created


async def test_in_a_worker_the_processor_records_and_the_worker_ends_the_run(
    live: LiveServer, client: RuntrackClient, processor: RuntrackTracingProcessor
) -> None:
    worker = Worker(live.url, wait_seconds=1.0)

    @worker.handler("agents-worker")
    async def handle(ctx: RunContext) -> None:
        model = FakeModel(calls("add", {"a": 1, "b": 1}), says("2"))
        agent = Agent(name="adder", model=model, tools=[add])
        config = RunConfig(trace_metadata={RUN_ID_METADATA: ctx.run_id})
        await Runner.run(agent, "1 + 1?", run_config=config)
        await flushed(processor)
        await ctx.message("assistant", "2")

    run = await client.create_run("agents-worker")
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        done = await client.wait(run.id)
    finally:
        worker.stop()
        await task
    assert (done.status, done.num_steps, done.tools_used) == ("completed", 2, ["add"])
    events = await events_of(client, run.id)
    assert [e.event_type for e in events[-2:]] == ["message_created", "run_status_changed"]


def test_without_openai_agents_the_import_names_the_extra() -> None:
    code = "import sys\nsys.modules['agents'] = None\nimport api.client.adapters.openai_agents"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 1
    assert "pip install 'runtrack[openai-agents]'" in done.stderr
