"""The synchronous client: the async client run on a private event-loop thread.

    with SyncRuntrackClient("http://127.0.0.1:8000") as client:
        run = client.create_run("my-agent", message="hello")
        for event in client.stream(run_id=run.id):
            print(event.event_type)

Every method has the same name, arguments and results as ``RuntrackClient``'s; the work runs
on one background loop (anyio's blocking portal), so nothing is implemented twice.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from api.client.async_client import RuntrackClient
from api.client.models import (
    Appended,
    AuditReport,
    Claim,
    Heartbeat,
    Message,
    Run,
    StoredEvent,
    ToolResultRecorded,
)

__all__ = ["SyncRuntrackClient"]

T = TypeVar("T")


class SyncRuntrackClient:
    def __init__(self, url: str, key: str | None = None, **options: Any) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._client: RuntrackClient = self._portal.call(_make_client, url, key, options)

    def __enter__(self) -> SyncRuntrackClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._portal.call(self._client.aclose)
        self._portal_cm.__exit__(None, None, None)

    def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        return self._portal.call(call)

    def create_run(self, agent_id: str, **fields: Any) -> Run:
        return self._call(lambda: self._client.create_run(agent_id, **fields))

    def get_run(self, run_id: str) -> Run:
        return self._call(lambda: self._client.get_run(run_id))

    def list_runs(self, **filters: Any) -> tuple[list[Run], str | None]:
        return self._call(lambda: self._client.list_runs(**filters))

    def claim(self, worker_id: str, **filters: Any) -> Claim | None:
        return self._call(lambda: self._client.claim(worker_id, **filters))

    def append(self, run_id: str, events: list[dict[str, Any]], **options: Any) -> Appended:
        return self._call(lambda: self._client.append(run_id, events, **options))

    def heartbeat(self, run_id: str, worker_id: str | None = None) -> Heartbeat:
        return self._call(lambda: self._client.heartbeat(run_id, worker_id))

    def record_tool_result(
        self, run_id: str, tool_call_id: str, name: str, **outcome: Any
    ) -> ToolResultRecorded:
        return self._call(
            lambda: self._client.record_tool_result(run_id, tool_call_id, name, **outcome)
        )

    def cancel(self, run_id: str, reason: str | None = None) -> Run:
        return self._call(lambda: self._client.cancel(run_id, reason))

    def resume(self, run_id: str) -> Run:
        return self._call(lambda: self._client.resume(run_id))

    def answer(self, run_id: str, response: Any, question_id: str | None = None) -> Run:
        return self._call(lambda: self._client.answer(run_id, response, question_id))

    def cancel_conversation(self, conversation_id: str, reason: str | None = None) -> Run:
        return self._call(lambda: self._client.cancel_conversation(conversation_id, reason))

    def messages(self, run_id: str) -> list[Message]:
        return self._call(lambda: self._client.messages(run_id))

    def wait(self, run_id: str) -> Run:
        return self._call(lambda: self._client.wait(run_id))

    def verify(self, run_id: str | None = None) -> AuditReport:
        return self._call(lambda: self._client.verify(run_id))

    def stream(self, **channel: Any) -> Iterator[StoredEvent]:
        """``RuntrackClient.stream``, iterated from this thread."""
        events: AsyncGenerator[StoredEvent, None] = self._client.stream(**channel)
        try:
            while True:
                try:
                    yield self._portal.call(events.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._portal.call(events.aclose)


async def _make_client(url: str, key: str | None, options: dict[str, Any]) -> RuntrackClient:
    return RuntrackClient(url, key, **options)
