"""``runtrack serve --demo``: simulated agents, so a newcomer sees live runs at once.

A producer creates runs for three agents on three shared conversations (so lanes queue), and
three workers claim and play them out through the same commands real workers use: messages,
tool calls (with the tool-result envelope), checkpoints, journal updates, token usage, child
runs, callbacks to the server's own ``/demo/callbacks``, and a mix of endings: most complete,
some fail resumably (and are resumed), some stop heartbeating (the reconciler times them out),
some wait for a human, some are cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.server.auth import DEFAULT_ORGANIZATION
from eventstore import NewEvent, StoreError, cancel_and_wait
from projections import RunCommands, RunState

__all__ = ["Demo", "demo_routes"]

logger = logging.getLogger("runtrack.demo")
ORG = DEFAULT_ORGANIZATION
"""The demo plays in open mode's organization, which the dashboard shows without a key."""
AGENTS = ("researcher", "coder", "reviewer")
CONVERSATIONS = ("conv-support", "conv-release", "conv-research")
TOOLS = ("web_search", "read_file", "run_tests", "summarise")
Step = Callable[[RunState], Awaitable[None]]


async def _callback_receiver(request: Request) -> Response:
    await request.body()
    return Response(status_code=200)


def demo_routes() -> list[Route]:
    return [Route("/demo/callbacks", _callback_receiver, methods=["POST"])]


class Demo:
    def __init__(self, commands: RunCommands, callback_url: str, *, pace: float = 1.0) -> None:
        self._commands = commands
        self._callback_url = callback_url
        self._pace = pace
        self._rng = random.Random()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Demo:
        loops: list[Callable[[], Awaitable[None]]] = [self._produce]
        loops += [lambda n=n: self._work(f"demo-worker-{n}") for n in range(3)]  # type: ignore[misc]
        self._tasks = [asyncio.create_task(_forever(loop)) for loop in loops]
        return self

    async def aclose(self) -> None:
        await cancel_and_wait(self._tasks)

    async def _pause(self, low: float = 0.3, high: float = 1.5) -> None:
        await asyncio.sleep(self._rng.uniform(low, high) * self._pace)

    async def _produce(self) -> None:
        while True:
            n = self._rng.randrange(len(AGENTS))
            await self._commands.create(
                ORG,
                AGENTS[n],
                conversation_id=self._rng.choice(CONVERSATIONS),
                message=self._rng.choice(
                    [
                        "Summarise the incident",
                        "Fix the failing test",
                        "Review the release notes",
                        "Find three sources",
                    ]
                ),
                metadata={"source": "demo", "priority": self._rng.choice(["low", "high"])},
                callback_url=self._callback_url,
            )
            await self._pause(1.0, 3.0)

    async def _work(self, worker: str) -> None:
        while True:
            claim = await self._commands.claim(ORG, worker)
            if claim is None:
                await self._pause(0.5, 1.0)
                continue
            try:
                await self._play(claim.run, worker)
            except StoreError as exc:  # e.g. cancelled under our feet: move on
                logger.debug("demo run %s stopped: %s", claim.run.run_id, exc)

    async def _play(self, run: RunState, worker: str) -> None:
        run_id = run.run_id
        await self._append(
            run_id,
            NewEvent("checkpoint_created", {"checkpoint_id": f"{run_id}-in", "kind": "input"}),
        )
        for step in range(self._rng.randint(1, 3)):
            if await self._cancelled(run_id, worker):
                return
            await self._tool_call(run_id, step)
            await self._llm_step(run_id, step)
        await self._maybe_child(run_id)
        await self._end(run_id)

    async def _cancelled(self, run_id: str, worker: str) -> bool:
        state = await self._commands.heartbeat(ORG, run_id, worker_id=worker)
        if self._rng.random() < 0.04 and not state.cancel_requested:
            await self._commands.cancel(ORG, run_id, reason="the demo changed its mind")
            state = await self._commands.heartbeat(ORG, run_id, worker_id=worker)
        if state.cancel_requested:
            await self._commands.change_status(
                ORG, run_id, stop_reason="cancelled", detail="cancelled at a step boundary"
            )
            return True
        return False

    async def _tool_call(self, run_id: str, step: int) -> None:
        tool, call = self._rng.choice(TOOLS), f"{run_id[-6:]}-call-{step}"
        await self._append(
            run_id,
            NewEvent(
                "tool_started", {"tool_call_id": call, "name": tool, "arguments": {"step": step}}
            ),
            NewEvent("run_status_changed", {"to": "waiting_on_tool"}),
        )
        await self._pause()
        result = {"tool_call_id": call, "name": tool, "result": {"ok": True}, "duration_ms": 420.0}
        await self._commands.record_tool_result(ORG, run_id, result)
        await self._append(
            run_id,
            NewEvent("run_status_changed", {"to": "running"}),
            NewEvent(
                "checkpoint_created", {"checkpoint_id": f"{call}-done", "kind": "tool_result"}
            ),
        )

    async def _llm_step(self, run_id: str, step: int) -> None:
        await self._pause()
        usage = {
            "model": "demo-llm",
            "prompt_tokens": self._rng.randint(200, 2000),
            "completion_tokens": self._rng.randint(20, 400),
            "duration_ms": 800.0,
            "ttft_ns": self._rng.randint(100, 900) * 1_000_000,
        }
        journal = {
            "objective": "answer the request",
            "current_state": f"step {step + 1} done",
            "next_action": "continue",
            "findings": [f"finding {step + 1}"],
            "handoff_next_action": "re-run the last tool call and continue",
        }
        await self._append(
            run_id,
            NewEvent("step_completed", usage),
            NewEvent("journal_updated", journal),
            NewEvent(
                "checkpoint_created",
                {"checkpoint_id": f"{run_id}-llm-{step}", "kind": "llm_response"},
            ),
        )

    async def _maybe_child(self, run_id: str) -> None:
        if self._rng.random() > 0.2:
            return
        child = await self._commands.create(
            ORG, "reviewer", parent_run_id=run_id, message="check my work"
        )
        await self._append(
            run_id,
            NewEvent("child_run_started", {"child_run_id": child.run_id, "agent_id": "reviewer"}),
            NewEvent("run_status_changed", {"to": "waiting_on_child"}),
        )
        await self._pause()
        await self._append(
            run_id,
            NewEvent("child_run_finished", {"child_run_id": child.run_id}),
            NewEvent("run_status_changed", {"to": "running"}),
        )

    async def _end(self, run_id: str) -> None:
        roll = self._rng.random()
        if roll < 0.08:
            return  # stop heartbeating: the reconciler will time the run out (resumable)
        if roll < 0.13:
            await self._append(
                run_id,
                NewEvent(
                    "run_status_changed", {"to": "waiting_on_human", "detail": "needs approval"}
                ),
            )
            return
        if roll < 0.25:
            await self._append(
                run_id,
                NewEvent(
                    "run_status_changed", {"stop_reason": "llm_api_error", "detail": "upstream 503"}
                ),
            )
            if self._rng.random() < 0.5:
                await self._pause()
                await self._commands.resume(ORG, run_id)
            return
        answer = NewEvent(
            "message_created", {"role": "assistant", "content": "Here is what I found."}
        )
        await self._append(
            run_id, answer, NewEvent("run_status_changed", {"stop_reason": "end_turn"})
        )

    async def _append(self, run_id: str, *events: NewEvent) -> None:
        await self._commands.append(ORG, run_id, list(events))


async def _forever(loop: Callable[[], Awaitable[None]]) -> None:
    """Run a demo loop; restart it (after a pause) if it ever fails."""
    while True:
        try:
            await loop()
        except Exception:
            logger.exception("a demo loop failed; restarting it")
            await asyncio.sleep(1.0)
