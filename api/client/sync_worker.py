"""The worker for plain functions: each handler runs in its own thread, the SDK on one loop.

    worker = SyncWorker("http://127.0.0.1:8000", concurrency=4)

    @worker.handler("researcher")
    def research(ctx: SyncRunContext) -> None:
        pages = ctx.tool("web_search", {"query": "runtrack"}, web_search)
        ctx.message("assistant", f"found {len(pages)} pages")

    worker.run()                # blocks until SIGTERM/SIGINT or worker.stop(), then drains

The same behaviour as ``Worker`` (docs/workers.md); only the handler's side is synchronous, so
that blocking code (a model SDK, a subprocess) does not stall the other runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from api.client.models import Run
from api.client.run_context import RunContext, _call
from api.client.worker import Handler, Worker

__all__ = ["SyncHandler", "SyncRunContext", "SyncWorker"]

T = TypeVar("T")
SyncHandler = Callable[["SyncRunContext"], str | None]
S = TypeVar("S", bound=SyncHandler)


class SyncRunContext:
    """``RunContext``'s calls, blocking, for a handler running in a thread."""

    def __init__(self, ctx: RunContext, loop: asyncio.AbstractEventLoop) -> None:
        self._ctx = ctx
        self._loop = loop

    def _do(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    @property
    def run(self) -> Run:
        return self._ctx.run

    @property
    def run_id(self) -> str:
        return self._ctx.run_id

    @property
    def state(self) -> Any:
        return self._ctx.state

    @property
    def resumed(self) -> bool:
        return self._ctx.resumed

    @property
    def cancel_requested(self) -> bool:
        return self._ctx.cancel_requested

    def message(self, role: str, content: str) -> None:
        self._do(self._ctx.message(role, content))

    def checkpoint(self, kind: str, state: Any = None) -> None:
        self._do(self._ctx.checkpoint(kind, state))

    def journal(self, **fields: Any) -> None:
        self._do(self._ctx.journal(**fields))

    def step(
        self,
        model: str | None = None,
        usage: Mapping[str, int] | None = None,
        ttft: float | None = None,
        *,
        duration: float | None = None,
    ) -> None:
        self._do(self._ctx.step(model, usage, ttft, duration=duration))

    def progress(self, patch: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        self._do(self._ctx.progress(patch, **fields))

    def check(self) -> None:
        self._do(self._ctx.check())

    def tool(
        self,
        name: str,
        arguments: Any,
        fn: Callable[..., Any],
        *,
        call_id: str | None = None,
        retry: bool = False,
    ) -> Any:
        """``RunContext.tool``, with ``fn`` called in this thread."""
        start = self._do(self._ctx.begin_tool(name, arguments, call_id=call_id, retry=retry))
        if start.replayed:
            return start.result
        began = time.perf_counter()
        try:
            result = _call(fn, arguments)
        except Exception as exc:
            self._do(self._ctx.end_tool(start, began, error=exc))
            raise AssertionError("end_tool raises on an error") from exc  # pragma: no cover
        self._do(self._ctx.end_tool(start, began, result=result))
        return result

    def ask_human(
        self,
        question: str,
        *,
        choices: Sequence[str] | None = None,
        question_id: str | None = None,
    ) -> Any:
        return self._do(self._ctx.ask_human(question, choices=choices, question_id=question_id))

    def start_child(self, agent_id: str, **fields: Any) -> Run:
        return self._do(self._ctx.start_child(agent_id, **fields))

    def wait_child(self, child: Run | str) -> Run:
        return self._do(self._ctx.wait_child(child))


class SyncWorker:
    """``Worker`` for synchronous handlers; the same options."""

    def __init__(self, url: str | None = None, key: str | None = None, **options: Any) -> None:
        self._worker = Worker(url, key, **options)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def worker_id(self) -> str:
        return self._worker.worker_id

    def handler(self, agent_id: str) -> Callable[[S], S]:
        def register(fn: S) -> S:
            self._worker.serve(agent_id, _in_thread(fn))
            return fn

        return register

    def run(self, *, handle_signals: bool = True) -> None:
        """Serve until stopped, then drain (blocks the calling thread)."""
        asyncio.run(self._run(handle_signals))

    async def _run(self, handle_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        await self._worker.run(handle_signals=handle_signals)

    def stop(self) -> None:
        """Stop claiming and drain; callable from any thread."""
        if self._loop is None:
            self._worker.stop()  # before it runs: it will stop at once
        else:
            self._loop.call_soon_threadsafe(self._worker.stop)


def _in_thread(fn: SyncHandler) -> Handler:
    """An async handler that runs ``fn`` in a daemon thread: a thread cannot be cancelled, so
    one given up while draining is left behind (its next SDK call raises ``RunLost``)."""

    async def handler(ctx: RunContext) -> str | None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()

        def settle(result: str | None, error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)

        def body() -> None:
            try:
                result = fn(SyncRunContext(ctx, loop))
            except BaseException as exc:  # handed to the loop, which raises it
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        threading.Thread(target=body, name=f"runtrack-{ctx.run_id}", daemon=True).start()
        return await done

    return handler
