"""The worker: claims runs of the agents it serves and plays each through its handler.

    worker = Worker("http://127.0.0.1:8000", key="rtk_…", concurrency=8)

    @worker.handler("researcher")
    async def research(ctx: RunContext) -> None:
        found = await ctx.tool("web_search", {"query": "runtrack"}, web_search)
        await ctx.message("assistant", f"found {len(found)} pages")

    await worker.run()          # until SIGTERM/SIGINT or worker.stop(), then drains

What it does for a run, the statuses a run passes through and what the handler may meet are in
docs/workers.md; the handler's context is ``api.client.run_context.RunContext``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from api.client.async_client import RuntrackClient, RuntrackError
from api.client.contract import TERMINAL_STATUSES
from api.client.models import Claim, Heartbeat, Run
from api.client.retrying import RETRY_SECONDS, retrying
from api.client.run_context import RESUMABLE_KINDS, RunContext
from api.client.worker_errors import HumanInputPending

__all__ = ["Handler", "Worker"]

logger = logging.getLogger("runtrack.worker")
Handler = Callable[[RunContext], Awaitable[str | None]]
"""A handler: returns ``None`` (the run ends ``end_turn``) or a stop reason."""
H = TypeVar("H", bound=Handler)
MAX_BACKOFF = 1.0
"""Seconds between claims at most, while claims fail (the server is away, say)."""


@dataclass
class _Held:
    """A run this worker holds: its context and the task running its handler."""

    ctx: RunContext
    handler: asyncio.Task[Any] | None = None
    given_up: bool = False


@dataclass
class _Outcome:
    value: str | None = None
    error: BaseException | None = None
    flags: set[str] = field(default_factory=set)


class Worker:
    """Serves agents: at most ``concurrency`` runs at once, one waiting claim per agent."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        client: RuntrackClient | None = None,
        concurrency: int = 4,
        worker_id: str | None = None,
        wait_seconds: float = 5.0,
        grace: float = 30.0,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        if client is None and url is None:
            raise ValueError("give the server's url or a client")
        self.client = client or RuntrackClient(str(url), key)
        self._own_client = client is None
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self.grace = grace
        self.retry_seconds = retry_seconds
        """How long a run's calls are repeated through transport errors (docs/workers.md)."""
        self._handlers: dict[str, Handler] = {}
        self._held: dict[str, _Held] = {}
        self._holding: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.completed = 0
        """Runs this worker ended (any terminal status), for benchmarks and tests."""

    # -- set-up --------------------------------------------------------------------------------

    def handler(self, agent_id: str) -> Callable[[H], H]:
        """Decorate the handler of ``agent_id``'s runs."""

        def register(fn: H) -> H:
            self.serve(agent_id, fn)
            return fn

        return register

    def serve(self, agent_id: str, handler: Handler) -> None:
        self._handlers[agent_id] = handler

    def stop(self) -> None:
        """Stop claiming and drain: handlers get ``grace`` seconds, then runs are given back."""
        self._stopping.set()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> None:
        """Serve until ``stop()`` (or SIGTERM/SIGINT when ``handle_signals``), then drain."""
        if not self._handlers:
            raise ValueError("no handler: register one with worker.handler(agent_id)")
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
        slots = asyncio.Semaphore(self.concurrency)
        claimers = [asyncio.create_task(self._claim_loop(a, slots)) for a in self._handlers]
        try:
            await self._stopping.wait()
            await self._drain(claimers)
        finally:
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            if self._own_client:
                await self.client.aclose()

    async def _claim_loop(self, agent_id: str, slots: asyncio.Semaphore) -> None:
        delay = 0.05
        while await self._slot(slots):
            try:
                claim = await self._claim(agent_id)
            except (httpx.TransportError, RuntrackError) as exc:
                logger.warning("claim failed: %s", exc)
                slots.release()
                await self._pause(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            delay = 0.05
            if claim is None:
                slots.release()
                continue
            task = asyncio.create_task(self._hold(agent_id, claim))
            self._holding.add(task)
            task.add_done_callback(self._holding.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _slot(self, slots: asyncio.Semaphore) -> bool:
        """Take a free slot, unless the worker stops first (then False)."""
        acquire = asyncio.ensure_future(slots.acquire())
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not acquire.done():
            acquire.cancel()
            return False
        if self._stopping.is_set():
            slots.release()
            return False
        return True

    async def _claim(self, agent_id: str) -> Claim | None:
        """One claim, waiting server-side up to ``wait_seconds`` for a run to come."""
        return await self.client.claim(
            self.worker_id, agent_id=agent_id, wait_seconds=self.wait_seconds
        )

    async def _pause(self, delay: float) -> None:
        """Back off after a failed claim, unless the worker stops meanwhile."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    # -- one run -------------------------------------------------------------------------------

    async def _hold(self, agent_id: str, claim: Claim) -> None:
        ctx = RunContext(self.client, claim, self.worker_id, retry_seconds=self.retry_seconds)
        ctx.replay_from(claim.tool_calls_started, claim.human_inputs)
        held = self._held[ctx.run_id] = _Held(ctx)
        beat = asyncio.create_task(self._heartbeat(ctx, claim.heartbeat_interval_seconds))
        try:
            outcome = await self._play(held, self._handlers[agent_id])
            beat.cancel()
            await self._finish(held, outcome)
        except httpx.TransportError as exc:
            logger.warning("run %s: the worker could not record its end: %s", ctx.run_id, exc)
        except Exception:
            logger.exception("run %s: the worker could not record its end", ctx.run_id)
        finally:
            beat.cancel()
            self._held.pop(ctx.run_id, None)

    async def _play(self, held: _Held, handler: Handler) -> _Outcome:
        held.handler = asyncio.create_task(_returning(handler, held.ctx))
        try:
            return _Outcome(value=await held.handler)
        except HumanInputPending:
            return _Outcome(flags={"suspended"})
        except asyncio.CancelledError:
            if not held.given_up:
                raise
            return _Outcome(flags={"given_up"})
        except Exception as exc:
            return _Outcome(error=exc)

    async def _heartbeat(self, ctx: RunContext, interval: float) -> None:
        """Beat until cancelled; learn of a cancel or of the run ending elsewhere. A beat is
        repeated through transport errors for up to an interval (the server's timeout is three)."""
        while True:
            await asyncio.sleep(interval)
            try:
                beat = await self._beat(ctx, interval)
            except httpx.TransportError as exc:
                logger.warning("heartbeat of %s failed: %s", ctx.run_id, exc)
                continue
            logger.debug("heartbeat of %s answered: %s", ctx.run_id, beat.status)
            ctx.note_cancel(beat.cancel_requested)
            if beat.status in TERMINAL_STATUSES:
                ctx.note_lost(beat.status)
                return

    async def _beat(self, ctx: RunContext, interval: float) -> Heartbeat | Run:
        """One heartbeat, or the run when the server refuses it (say it ended elsewhere)."""
        what = f"run {ctx.run_id}: a heartbeat"
        try:
            return await retrying(
                lambda: self.client.heartbeat(ctx.run_id, self.worker_id), what, interval
            )
        except RuntrackError:
            return await retrying(lambda: self.client.get_run(ctx.run_id), what, interval)

    async def _finish(self, held: _Held, outcome: _Outcome) -> None:
        ctx = held.ctx
        if ctx.lost is not None or ctx.suspended or "suspended" in outcome.flags:
            return
        if ctx.cancel_raised or ctx.cancel_requested:
            await self._end(ctx, "cancelled", "cancelled at an SDK call")
        elif "given_up" in outcome.flags:
            await self._give_back(ctx)
        elif outcome.error is not None:
            error = outcome.error
            await self._end(ctx, "error", f"{type(error).__name__}: {error}"[:4000])
        else:
            await self._end(ctx, outcome.value or "end_turn", None)

    async def _end(self, ctx: RunContext, stop_reason: str, detail: str | None) -> None:
        change = {"stop_reason": stop_reason, "detail": detail}
        try:
            await ctx.record([_change(change)])
        except RuntrackError as exc:
            if exc.status == 422 and stop_reason not in ("error", "cancelled"):
                await self._end(ctx, "error", f"the handler returned {stop_reason!r}: {exc}")
                return
            read = retrying(lambda: self.client.get_run(ctx.run_id), "a read", ctx.retry_seconds)
            if not (await read).terminal:
                raise
        self.completed += 1

    async def _give_back(self, ctx: RunContext) -> None:
        """Leave a run another worker picks up: failed, then resumed from its checkpoint (one is
        written first, from the handler's latest state, if the run has none)."""
        events = []
        if ctx.checkpoint_kind is None:
            state = {"kind": "input", "state": ctx.state, "checkpoint_id": f"{ctx.run_id}-drain"}
            events.append({"event_type": "checkpoint_created", "payload": state})
            ctx.checkpoint_kind = "input"
        detail = f"worker {self.worker_id} stopped: gave the run up after {self.grace:g} s"
        events.append(_change({"stop_reason": "error", "detail": detail}))
        ctx.note_lost("given_up")
        await ctx.record(events)
        if ctx.checkpoint_kind in RESUMABLE_KINDS:
            await self.client.resume(ctx.run_id)

    # -- draining ------------------------------------------------------------------------------

    async def _drain(self, claimers: list[asyncio.Task[None]]) -> None:
        """Let in-flight claims and handlers finish within the grace period, then give up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        await asyncio.wait(claimers, timeout=self.grace)
        for task in claimers:
            task.cancel()
        await _settle(claimers)
        holders = [h for h in self._held.values() if h.handler is not None]
        pending = [h.handler for h in holders if h.handler is not None]
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        for held in list(self._held.values()):
            if held.handler is not None and not held.handler.done():
                held.given_up = True
                held.handler.cancel()
        await _settle(list(self._holding))


async def _returning(handler: Handler, ctx: RunContext) -> str | None:
    return await handler(ctx)


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        with suppress(asyncio.CancelledError, Exception):
            await task


def _change(payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": "run_status_changed", "payload": payload}
