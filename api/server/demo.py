"""``runtrack serve --demo``: simulated agents, so a newcomer sees live runs at once.

The agents are the worker SDK's showcase: they reach the server over HTTP like any user's
(``api.client.Worker``, docs/workers.md), never through the server's own objects. A producer
creates runs for three agents on three shared conversations (so lanes queue); one worker plays
them: tool calls, checkpoints, journal updates, token usage, progress, child runs, questions
to a human, callbacks to the server's own ``/demo/callbacks``, and a mix of endings. An
"operator" resumes some failed runs, answers questions and cancels now and then; a crashing
worker (plain client calls) walks away from a tool call now and then, so that the reconciler
times the run out and the SDK shows a resumed run meeting its unfinished call.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.client import RunContext, RuntrackClient, RuntrackError, ToolCallUnfinished, Worker

__all__ = ["Demo", "demo_routes"]

logger = logging.getLogger("runtrack.demo")
AGENTS = ("researcher", "coder", "reviewer")
CONVERSATIONS = ("conv-support", "conv-release", "conv-research")
TOOLS = ("web_search", "read_file", "run_tests", "summarise")
DRAIN_SECONDS = 5.0
"""At most the worker's claim wait (1 s) and grace (2 s), and some room."""
MESSAGES = (
    "Summarise the incident",
    "Fix the failing test",
    "Review the release notes",
    "Find three sources",
)


async def _callback_receiver(request: Request) -> Response:
    await request.body()
    return Response(status_code=200)


def demo_routes() -> list[Route]:
    return [Route("/demo/callbacks", _callback_receiver, methods=["POST"])]


def plan(run_id: str) -> random.Random:
    """The run's own dice: a resumed handler makes the same choices, so its keyed tool calls
    and questions meet what the first attempt recorded."""
    return random.Random(run_id)


class Demo:
    def __init__(
        self, url: str, callback_url: str, *, pace: float = 1.0, key: str | None = None
    ) -> None:
        self._client = RuntrackClient(url, key, timeout=30)
        self._callback_url = callback_url
        self._pace = pace
        self._rng = random.Random()
        self._worker = Worker(
            client=self._client, concurrency=6, worker_id="demo-worker", wait_seconds=1, grace=2
        )
        for agent in AGENTS:
            self._worker.serve(agent, self._play)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Demo:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per demo request
        loops = [self._produce, self._operate, self._crash, self._serve]
        self._tasks = [asyncio.create_task(self._after_listening(loop)) for loop in loops]
        return self

    async def _after_listening(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Start ``loop`` once the server answers: the demo starts before it listens."""
        while True:
            try:
                await self._client.head()
            except httpx.TransportError:
                await asyncio.sleep(0.05)
            else:
                break
        await _forever(loop)

    async def aclose(self) -> None:
        """Stop the people at once; let the worker drain (its claim wait and grace)."""
        *people, serving = self._tasks
        self._worker.stop()
        for task in people:
            task.cancel()
        await asyncio.wait([serving], timeout=DRAIN_SECONDS)
        serving.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        await self._client.aclose()

    async def _pause(self, low: float = 0.3, high: float = 1.5) -> None:
        await asyncio.sleep(self._rng.uniform(low, high) * self._pace)

    async def _serve(self) -> None:
        await self._worker.run(handle_signals=False)

    # -- the agents ----------------------------------------------------------------------------

    async def _play(self, ctx: RunContext) -> str | None:
        """One simulated agent run, on the SDK: what docs/workers.md shows, with dice."""
        dice = plan(ctx.run_id)
        steps, fate = dice.randint(1, 3), dice.random()
        if ctx.state is None:
            await ctx.checkpoint("input", {"step": 0})
        await ctx.progress(progress=0, total=steps)
        for step in range(steps):
            tool = dice.choice(TOOLS)
            await self._tool_call(ctx, tool, step)
            await self._llm_step(ctx, step)
            await ctx.progress(progress=step + 1)
        if fate < 0.15 and ctx.run.agent_id != "reviewer":
            child = await ctx.start_child(
                "reviewer", message="check my work", callback_url=self._callback_url
            )
            await ctx.wait_child(child)
        if 0.15 <= fate < 0.22:
            answer = await ctx.ask_human("Ship it?", choices=["yes", "no"])
            await ctx.message("user", str(answer))
        if 0.22 <= fate < 0.32 and not ctx.resumed:
            return "llm_api_error"  # failed, resumable from its last checkpoint
        await ctx.message("assistant", "Here is what I found.")
        return None

    async def _tool_call(self, ctx: RunContext, tool: str, step: int) -> None:
        try:
            await ctx.tool(tool, {"step": step}, self._simulated_tool)
        except ToolCallUnfinished:
            await ctx.journal(current_state="a worker died in a tool call: running it again")
            await ctx.tool(tool, {"step": step}, self._simulated_tool, retry=True)
        await ctx.checkpoint("tool_result", {"step": step})

    async def _simulated_tool(self, step: int) -> dict[str, Any]:
        await self._pause()
        return {"ok": True, "step": step}

    async def _llm_step(self, ctx: RunContext, step: int) -> None:
        await self._pause()
        usage = {
            "prompt_tokens": self._rng.randint(200, 2000),
            "completion_tokens": self._rng.randint(20, 400),
        }
        await ctx.step("demo-llm", usage, ttft=self._rng.randint(100, 900) / 1000, duration=0.8)
        await ctx.journal(
            objective="answer the request",
            current_state=f"step {step + 1} done",
            next_action="continue",
            findings=[f"finding {step + 1}"],
            handoff_next_action="re-run the last tool call and continue",
        )
        await ctx.checkpoint("llm_response", {"step": step + 1})

    # -- the people and the crashes around them ------------------------------------------------

    async def _produce(self) -> None:
        while True:
            await self._client.create_run(
                self._rng.choice(AGENTS),
                conversation_id=self._rng.choice(CONVERSATIONS),
                message=self._rng.choice(MESSAGES),
                metadata={"source": "demo", "priority": self._rng.choice(["low", "high"])},
                callback_url=self._callback_url,
            )
            await self._pause(1.0, 3.0)

    async def _operate(self) -> None:
        """Resume half the resumable runs, answer questions, cancel a run now and then."""
        decided: set[str] = set()
        while True:
            await self._pause(1.0, 2.0)
            runs, _ = await self._client.list_runs(
                status=["failed", "timed_out", "waiting_on_human", "running"], limit=50
            )
            for run in runs:
                if run.id in decided or run.agent_id not in AGENTS:
                    continue
                if run.status == "running":
                    if self._rng.random() < 0.03:
                        decided.add(run.id)
                        await _quietly(
                            self._client.cancel(run.id, reason="the demo changed its mind")
                        )
                    continue
                decided.add(run.id)
                if run.status == "waiting_on_human":
                    await _quietly(self._client.answer(run.id, self._rng.choice(["yes", "no"])))
                elif run.resume_available and (
                    run.status == "timed_out" or self._rng.random() < 0.7
                ):
                    await _quietly(self._client.resume(run.id))

    async def _crash(self) -> None:
        """A worker that dies in a tool call: it claims, starts the call, and walks away.

        It claims only a run it has just created in a lane of its own, so that it never takes
        a resumed run back from the demo's worker (which would crash it again)."""
        while True:
            await self._pause(10.0, 25.0)
            lane = f"demo-crash-{self._rng.randrange(10**9)}"
            await self._client.create_run(
                "researcher", lane_key=lane, message="Find three sources",
                metadata={"source": "demo", "priority": "low"}, callback_url=self._callback_url,
            )  # fmt: skip
            claim = await self._client.claim("demo-crashing-worker", lane_key=lane)
            if claim is None:
                continue  # the demo's worker was quicker: no crash this time
            run_id, dice = claim.run.id, plan(claim.run.id)
            dice.randint(1, 3), dice.random()  # the handler's first throws: same dice
            tool = dice.choice(TOOLS)
            started = {"tool_call_id": f"{tool}-1", "name": tool, "arguments": {"step": 0}}
            checkpoint = {"checkpoint_id": f"{run_id}-in", "kind": "input", "state": {"step": 0}}
            await self._client.append(
                run_id,
                [
                    {"event_type": "checkpoint_created", "payload": checkpoint},
                    {"event_type": "tool_started", "payload": started},
                    {"event_type": "run_status_changed", "payload": {"to": "waiting_on_tool"}},
                ],
            )


async def _quietly(call: Awaitable[Any]) -> None:
    """A person's action that the run outpaced (it moved on meanwhile) is no failure."""
    with suppress(RuntrackError):
        await call


async def _forever(loop: Callable[[], Awaitable[None]]) -> None:
    """Run a demo loop; restart it (after a pause) if it fails (e.g. before the server
    listens: the demo starts with the server and reaches it over HTTP)."""
    while True:
        try:
            await loop()
        except (httpx.TransportError, RuntrackError) as exc:
            logger.debug("a demo loop met %s; restarting it", exc)
            await asyncio.sleep(0.5)
        except Exception:
            logger.exception("a demo loop failed; restarting it")
            await asyncio.sleep(1.0)
        else:
            return
