"""The LangChain handler against a real server, driven by LangChain's own fake chat model: the
run holds the steps (with usage), the tool calls (arguments, results, errors) and the ending
the framework reported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import BaseTool, tool

from api.client import RunContext, RuntrackClient, Worker
from api.client.adapters.langchain import RuntrackCallbackHandler
from tests.api.client.recorded import events_of, of_type
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def divide(a: int, b: int) -> float:
    """Divide a by b."""
    return a / b


def scripted(*replies: AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(replies))


def asks(name: str, arguments: dict[str, Any], call_id: str) -> AIMessage:
    usage = {"input_tokens": 40, "output_tokens": 7, "total_tokens": 47}
    return AIMessage(
        "", tool_calls=[{"name": name, "args": arguments, "id": call_id}], usage_metadata=usage
    )


def answers(text: str) -> AIMessage:
    return AIMessage(
        text, usage_metadata={"input_tokens": 60, "output_tokens": 5, "total_tokens": 65}
    )


def agent(model: GenericFakeChatModel, tools: list[BaseTool]) -> RunnableLambda[str, str]:
    """The smallest tool-calling loop: ask the model, run the tools it asks for, repeat."""
    by_name = {t.name: t for t in tools}

    async def loop(question: str, config: RunnableConfig) -> str:
        messages: list[BaseMessage] = [HumanMessage(question)]
        while True:
            reply = await model.ainvoke(messages, config)
            messages.append(reply)
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                return str(reply.content)
            for call in reply.tool_calls:
                result: ToolMessage = await by_name[call["name"]].ainvoke(call, config)
                messages.append(result)

    return RunnableLambda(loop, name="agent")


async def test_a_chain_with_a_tool_call_is_a_completed_run_with_its_steps_and_tool(
    client: RuntrackClient,
) -> None:
    model = scripted(asks("add", {"a": 2, "b": 3}, "call-1"), answers("five"))
    handler = RuntrackCallbackHandler(client, "calculator", message="add 2 and 3")
    output = await agent(model, [add]).ainvoke("add 2 and 3", {"callbacks": [handler]})
    assert output == "five"
    assert handler.run_id is not None
    run = await client.get_run(handler.run_id)
    assert (run.agent_id, run.status, run.stop_reason) == ("calculator", "completed", "end_turn")
    assert (run.num_steps, run.prompt_tokens, run.completion_tokens) == (2, 100, 12)
    events = await events_of(client, run.id)
    steps = of_type(events, "step_completed")
    assert [s["model"] for s in steps] == ["GenericFakeChatModel"] * 2
    assert all(s["duration_ms"] >= 0 for s in steps)
    assert of_type(events, "tool_started") == [
        {"tool_call_id": "call-1", "name": "add", "arguments": {"a": 2, "b": 3}}
    ]
    (finished,) = of_type(events, "tool_finished")
    assert (finished["tool_call_id"], finished["status"], finished["result"]) == (
        "call-1",
        "success",
        "5",
    )
    statuses = [p["to"] for p in of_type(events, "run_status_changed")]
    assert statuses == ["running", "waiting_on_tool", "running", "completed"]


async def test_a_tool_error_is_recorded_and_the_chain_error_fails_the_run(
    client: RuntrackClient,
) -> None:
    model = scripted(asks("divide", {"a": 1, "b": 0}, "call-9"))
    handler = RuntrackCallbackHandler(client, "calculator")
    with pytest.raises(ZeroDivisionError):
        await agent(model, [divide]).ainvoke("1/0", {"callbacks": [handler]})
    assert handler.run_id is not None
    run = await client.get_run(handler.run_id)
    assert (run.status, run.stop_reason) == ("failed", "error")
    assert run.error == "ZeroDivisionError: division by zero"
    (finished,) = of_type(await events_of(client, run.id), "tool_finished")
    assert finished["status"] == "error"
    assert finished["error"] == "ZeroDivisionError: division by zero"


async def test_each_outermost_invocation_is_a_run_of_its_own(client: RuntrackClient) -> None:
    handler = RuntrackCallbackHandler(client, "greeter")
    model = scripted(answers("hi"), answers("hello again"))
    first = await agent(model, []).ainvoke("hi", {"callbacks": [handler]})
    first_run = handler.run_id
    second = await agent(model, []).ainvoke("hi again", {"callbacks": [handler]})
    assert (first, second) == ("hi", "hello again")
    runs, _ = await client.list_runs(agent_id="greeter")
    assert {r.id for r in runs} == {first_run, handler.run_id}
    assert [(r.status, r.num_steps) for r in runs] == [("completed", 1)] * 2


async def test_a_queued_run_is_attached_and_ended_by_the_handler(client: RuntrackClient) -> None:
    queued = await client.create_run("calculator", message="hello")
    handler = RuntrackCallbackHandler(client, run_id=queued.id)
    await agent(scripted(answers("hi")), []).ainvoke("hello", {"callbacks": [handler]})
    run = await client.get_run(queued.id)
    assert (run.status, run.num_steps) == ("completed", 1)


async def test_in_a_worker_the_handler_records_and_the_worker_ends_the_run(
    live: LiveServer, client: RuntrackClient
) -> None:
    worker = Worker(live.url, wait_seconds=1.0)

    @worker.handler("lc-worker")
    async def handle(ctx: RunContext) -> None:
        handler = RuntrackCallbackHandler.in_worker(ctx)
        model = scripted(asks("add", {"a": 1, "b": 1}, "call-w"), answers("two"))
        await agent(model, [add]).ainvoke("1+1", {"callbacks": [handler]})
        await ctx.message("assistant", "two")

    run = await client.create_run("lc-worker")
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        done = await client.wait(run.id)
    finally:
        worker.stop()
        await task
    assert (done.status, done.num_steps, done.tools_used) == ("completed", 2, ["add"])
    events = await events_of(client, run.id)
    endings = [p for p in of_type(events, "run_status_changed") if p["to"] == "completed"]
    assert len(endings) == 1  # the worker's, after the assistant's message
    assert events[-2].event_type == "message_created"


def test_without_langchain_core_the_import_names_the_extra() -> None:
    code = "import sys\nsys.modules['langchain_core'] = None\nimport api.client.adapters.langchain"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 1
    assert "pip install 'runtrack[langchain]'" in done.stderr


async def test_concurrent_invocations_on_one_handler_are_separate_runs(
    client: RuntrackClient,
) -> None:
    both_inside = asyncio.Barrier(2)

    @tool
    async def meet(who: str) -> str:
        """Wait until the other invocation is inside its tool call too."""
        await both_inside.wait()
        return f"met {who}"

    handler = RuntrackCallbackHandler(client, "pair")

    async def invoke(who: str) -> str:
        model = scripted(asks("meet", {"who": who}, f"call-{who}"), answers(f"done {who}"))
        return await agent(model, [meet]).ainvoke(who, {"callbacks": [handler]})

    outputs = await asyncio.gather(invoke("ann"), invoke("bob"))
    assert list(outputs) == ["done ann", "done bob"]
    runs, _ = await client.list_runs(agent_id="pair")
    assert len(runs) == 2
    calls = set()
    for run in runs:
        assert (run.status, run.num_steps, run.tools_used) == ("completed", 2, ["meet"])
        events = await events_of(client, run.id)
        (started,) = of_type(events, "tool_started")
        (finished,) = of_type(events, "tool_finished")
        assert finished["result"] == f"met {started['arguments']['who']}"
        calls.add(started["tool_call_id"])
        statuses = [p["to"] for p in of_type(events, "run_status_changed")]
        assert statuses == ["running", "waiting_on_tool", "running", "completed"]
    assert calls == {"call-ann", "call-bob"}


async def test_a_handler_given_to_an_inner_runnable_only_records_its_runs(
    client: RuntrackClient,
) -> None:
    handler = RuntrackCallbackHandler(client, "inner")
    model = scripted(answers("hi"))
    tracked = model.with_config(callbacks=[handler])

    async def outer(question: str, config: RunnableConfig) -> str:
        reply = await tracked.ainvoke([HumanMessage(question)], config)
        return str(reply.content)

    assert await RunnableLambda(outer).ainvoke("hello") == "hi"
    assert handler.run_id is not None
    run = await client.get_run(handler.run_id)
    assert (run.status, run.num_steps, run.prompt_tokens) == ("completed", 1, 60)
