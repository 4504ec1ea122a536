"""One run an adapter records into, with the bookkeeping every adapter needs.

The adapter ends the run only when it started it (created it, or moved a queued run to
``running``): a run a worker claimed is ended by that worker. Tool calls may overlap (both
frameworks run tools concurrently), while the run may be ``waiting_on_tool`` only once, so the
status moves with the first call that opens and the last that closes. Every call is serialised
by a lock, so the log holds them in the order the framework reported them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from api.client.async_client import RuntrackClient
from api.client.contract import MAX_TEXT_CHARS
from api.client.models import Appended
from api.client.run_context import RunContext

__all__ = ["TrackedRun", "json_value"]

Append = Callable[[Sequence[Mapping[str, Any]]], Awaitable[Appended]]
_STARTABLE = frozenset({"queued", "waiting_on_lane"})
_LIVE = frozenset({"running", "waiting_on_tool", "waiting_on_child", "resuming"})


class TrackedRun:
    """A run being recorded: steps, tool calls and (when ``owned``) its end."""

    def __init__(self, client: RuntrackClient, run_id: str, append: Append, *, owned: bool):
        self.client = client
        self.run_id = run_id
        self.owned = owned
        self._append = append
        self._open_tools = 0
        self._lock = asyncio.Lock()
        self._beating: asyncio.Task[None] | None = None
        self.ended = False

    @classmethod
    async def create(
        cls, client: RuntrackClient, agent_id: str, *, heartbeat_seconds: float, **fields: Any
    ) -> TrackedRun:
        """A new run of ``agent_id`` (``message``, ``conversation_id``, ``metadata`` …), running."""
        run = await client.create_run(agent_id, **fields)
        return await cls._started(client, run.id, heartbeat_seconds)

    @classmethod
    async def attach(
        cls, client: RuntrackClient, run_id: str, *, heartbeat_seconds: float
    ) -> TrackedRun:
        """An existing run: a queued one is started (and so ours to end); a live one (a
        worker's) is recorded into and left to its worker."""
        run = await client.get_run(run_id)
        if run.status in _STARTABLE:
            return await cls._started(client, run_id, heartbeat_seconds)
        if run.status in _LIVE:
            return cls(client, run_id, _client_append(client, run_id), owned=False)
        raise ValueError(f"run {run_id} is {run.status}: only a queued or live run is tracked")

    @classmethod
    def in_worker(cls, context: RunContext) -> TrackedRun:
        """A worker's claimed run: appends go through its context (so a cancel raises
        ``RunCancelled`` at the next one), and its worker ends it."""

        async def append(events: Sequence[Mapping[str, Any]]) -> Appended:
            return await context.append([dict(event) for event in events])

        return cls(context.client, context.run_id, append, owned=False)

    @classmethod
    async def _started(
        cls, client: RuntrackClient, run_id: str, heartbeat_seconds: float
    ) -> TrackedRun:
        tracked = cls(client, run_id, _client_append(client, run_id), owned=True)
        await tracked.append([_status("running")])
        tracked._beating = asyncio.create_task(tracked._beat(heartbeat_seconds))
        return tracked

    async def append(self, events: Sequence[Mapping[str, Any]]) -> None:
        async with self._lock:
            await self._append(events)

    async def step(
        self,
        model: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        duration_ms: float | None = None,
        ttft_ns: int | None = None,
    ) -> None:
        payload: dict[str, Any] = {
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
        }
        if duration_ms is not None:
            payload["duration_ms"] = duration_ms
        if ttft_ns is not None:
            payload["ttft_ns"] = ttft_ns
        await self.append([{"event_type": "step_completed", "payload": payload}])

    async def tool_started(self, call_id: str, name: str, arguments: Any) -> None:
        started = _event("tool_started", tool_call_id=call_id, name=name, arguments=arguments)
        async with self._lock:
            self._open_tools += 1
            events = [started, _status("waiting_on_tool")] if self._open_tools == 1 else [started]
            await self._append(events)

    async def tool_finished(
        self,
        call_id: str,
        name: str,
        *,
        duration_ms: float,
        result: Any = None,
        error: str | None = None,
    ) -> None:
        """Through the envelope (``POST …/tool-results``): recorded once, whoever repeats it."""
        outcome: dict[str, Any] = {"duration_ms": duration_ms}
        if error is None:
            outcome |= {"status": "success", "result": result}
        else:
            outcome |= {"status": "error", "error": error[:MAX_TEXT_CHARS]}
        async with self._lock:
            await self.client.record_tool_result(self.run_id, call_id, name, **outcome)
            self._open_tools = max(0, self._open_tools - 1)
            if self._open_tools == 0:
                await self._append([_status("running")])

    async def end(self, error: str | None = None) -> None:
        """``completed``, or ``failed`` with ``error`` as its detail; nothing for a run that is
        not ours to end (its worker ends it from its handler's outcome)."""
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        if not self.owned or self.ended:
            return
        self.ended = True
        if error is None:
            await self.append([_status("completed")])
        else:
            ending = {"to": "failed", "stop_reason": "error", "detail": error[:MAX_TEXT_CHARS]}
            await self.append([{"event_type": "run_status_changed", "payload": ending}])

    async def _beat(self, seconds: float) -> None:
        """Liveness while the framework works without reporting (a long model call): without
        it the reconciler would time the run out (``--heartbeat-timeout``)."""
        while True:
            await asyncio.sleep(seconds)
            with contextlib.suppress(Exception):
                await self.client.heartbeat(self.run_id)


def json_value(value: Any) -> Any:
    """``value`` if it is JSON as it stands, else its text: a tool's result may be any object."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return str(value)
    return value


def _client_append(client: RuntrackClient, run_id: str) -> Append:
    async def append(events: Sequence[Mapping[str, Any]]) -> Appended:
        return await client.append(run_id, events)

    return append


def _event(event_type: str, **payload: Any) -> dict[str, Any]:
    return {"event_type": event_type, "payload": payload}


def _status(to: str) -> dict[str, Any]:
    return {"event_type": "run_status_changed", "payload": {"to": to}}
