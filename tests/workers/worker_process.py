"""A worker process for the tests: ``python -m tests.workers.worker_process URL SCENARIO DIR``.

Its handlers write what they did to files in DIR (``calls``: one line per tool function
actually invoked; ``reports``: what the handler was told), so that a test sees which work a
killed, drained or restarted worker did. ``HANG=1`` makes the ``slow`` tool never return.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from api.client import (
    RunCancelled,
    RunContext,
    RunLost,
    SyncRunContext,
    SyncWorker,
    ToolCallUnfinished,
    Worker,
)

AGENT = "agent"


HANGING = "hanging inside the slow tool"


def note(folder: Path, name: str, line: str) -> None:
    with (folder / name).open("a") as file:
        file.write(line + "\n")


def announce_hanging() -> None:
    """Tells the test the call is recorded and the worker now hangs: the moment to kill it."""
    print(HANGING, flush=True)


class Scenarios:
    """The handlers, by scenario name; ``folder`` is where they leave their traces."""

    def __init__(self, folder: Path, worker_id: str) -> None:
        self.folder = folder
        self.worker_id = worker_id
        self.hang = os.environ.get("HANG") == "1"

    async def fetch(self, url: str) -> dict[str, Any]:
        note(self.folder, "calls", f"fetch {url}")
        return {"url": url, "body": "hello"}

    async def slow(self) -> str:
        note(self.folder, "calls", "slow")
        if self.hang:
            announce_hanging()
            await asyncio.Event().wait()
        return "slow done"

    async def tools(self, ctx: RunContext) -> None:
        """Two tool calls between checkpoints; the second one is where a worker dies."""
        await ctx.checkpoint("input", {"stage": 0})
        page = await ctx.tool("fetch", {"url": "https://example.org"}, self.fetch)
        await ctx.checkpoint("tool_result", {"stage": 1, "page": page})
        try:
            result = await ctx.tool("slow", None, self.slow)
        except ToolCallUnfinished as unfinished:
            note(self.folder, "reports", f"unfinished {unfinished.call_id}")
            result = await ctx.tool("slow", None, self.slow, retry=True)
        await ctx.step("model-x", {"prompt_tokens": 3, "completion_tokens": 4}, ttft=0.01)
        await ctx.message("assistant", f"{page['body']} / {result}")

    async def cancel(self, ctx: RunContext, *, catch: bool) -> str | None:
        """A long step that ends only once the test says so, then an SDK call."""
        await ctx.message("assistant", "starting a long step")
        go = self.folder / "go"
        while not go.exists():  # noqa: ASYNC110 - the long step ends when the test says so
            await asyncio.sleep(0.02)
        try:
            await ctx.step("model-x", {"prompt_tokens": 1, "completion_tokens": 1})
        except RunCancelled:
            note(self.folder, "reports", "cancelled")
            if not catch:
                raise
            try:
                await ctx.message("assistant", "one more thing")
            except RunCancelled:
                note(self.folder, "reports", "cancelled again")
            return "end_turn"  # the handler tries to complete: cancel wins
        except RunLost:
            note(self.folder, "reports", "lost")
            raise
        note(self.folder, "reports", "not cancelled")
        return None

    async def ask(self, ctx: RunContext) -> None:
        """Work, a question, more work: the answer comes back on the next attempt."""
        plan = await ctx.tool("prepare", {"what": "release"}, self.prepare)
        await ctx.checkpoint("tool_result", {"plan": plan})
        answer = await ctx.ask_human("Ship it?", choices=["yes", "no"])
        note(self.folder, "reports", f"answer {answer} on {self.worker_id}")
        await ctx.message("assistant", f"{plan}: {answer}")

    async def prepare(self, what: str) -> str:
        note(self.folder, "calls", f"prepare {what} on {self.worker_id}")
        return f"{what} planned"

    async def exclusive(self, ctx: RunContext) -> None:
        await ctx.tool("work", {"run": ctx.run_id}, self.work)

    async def work(self, run: str) -> None:
        note(self.folder, "calls", f"{run} {self.worker_id}")
        await asyncio.sleep(0)

    def sync_tools(self, ctx: SyncRunContext) -> None:
        """``tools`` for the synchronous worker."""
        ctx.checkpoint("input", {"stage": 0})
        page = ctx.tool("fetch", {"url": "https://example.org"}, self._sync_fetch)
        ctx.checkpoint("tool_result", {"stage": 1, "page": page})
        try:
            result = ctx.tool("slow", None, self._sync_slow)
        except ToolCallUnfinished as unfinished:
            note(self.folder, "reports", f"unfinished {unfinished.call_id}")
            result = ctx.tool("slow", None, self._sync_slow, retry=True)
        ctx.step("model-x", {"prompt_tokens": 3, "completion_tokens": 4})
        ctx.message("assistant", f"{page['body']} / {result}")

    def _sync_fetch(self, url: str) -> dict[str, Any]:
        note(self.folder, "calls", f"fetch {url}")
        return {"url": url, "body": "hello"}

    def _sync_slow(self) -> str:
        note(self.folder, "calls", "slow")
        if self.hang:
            announce_hanging()
            threading.Event().wait()
        return "slow done"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("scenario")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    options = {
        "concurrency": args.concurrency,
        "grace": args.grace,
        "wait_seconds": 2.0,
    }
    if args.scenario == "sync_tools":
        sync = SyncWorker(args.url, **options)
        sync.handler(AGENT)(Scenarios(args.folder, sync.worker_id).sync_tools)
        sync.run()
        return
    worker = Worker(args.url, **options)
    scenarios = Scenarios(args.folder, worker.worker_id)
    handlers = {
        "tools": scenarios.tools,
        "cancel": lambda ctx: scenarios.cancel(ctx, catch=False),
        "cancel_caught": lambda ctx: scenarios.cancel(ctx, catch=True),
        "exclusive": scenarios.exclusive,
        "ask": scenarios.ask,
    }
    worker.serve(AGENT, handlers[args.scenario])
    asyncio.run(worker.run())
    note(args.folder, "exits", worker.worker_id)


if __name__ == "__main__":
    main()
