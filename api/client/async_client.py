"""The Python client: every endpoint, typed errors, and a stream that survives reconnects.

    async with RuntrackClient("http://127.0.0.1:8000", key="rtk_…") as client:
        run = await client.create_run("my-agent", message="hello")
        async for event in client.stream(run_id=run.id):    # ends with the run
            print(event.event_type, event.payload)
        final = await client.wait(run.id)                   # returns on a terminal status

``stream`` reconnects by itself with ``Last-Event-ID`` and a capped exponential backoff, never
yields an event twice (it remembers the last id it yielded), and stops on ``event: end`` or a
``204`` (the run has ended). Errors carry the server's error code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from api.client.models import (
    Appended,
    AuditReport,
    ChainHeadAnswer,
    Claim,
    EventList,
    ExportPage,
    Heartbeat,
    Journal,
    Message,
    MessageList,
    Ready,
    Run,
    RunList,
    StoredEvent,
    ToolResultRecorded,
    Usage,
)

__all__ = ["CursorExpiredError", "RuntrackClient", "RuntrackError"]

KEEPALIVE_EXPIRY = 2.0
"""Seconds an idle pooled connection is kept for reuse: well under the server's keep-alive
(``runtrack serve --keep-alive-timeout``, 20 s; uvicorn's own default, 5 s, is what httpx's
default expiry equals). A connection reused just as the server closes it fails with a reset
(``ReadError``) the request never reached the server through (docs/workers.md)."""


class RuntrackError(Exception):
    """An error answer: ``status``, the server's stable ``code``, ``message``, ``details``."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class CursorExpiredError(RuntrackError):
    """``410``: the cursor is older than the oldest event the server keeps (the events after it
    were archived), or a run's archived events cannot be read there. Nothing was skipped: to go
    on without them, ask again after ``oldest_event_id - 1`` (``resume_after``)."""

    @property
    def oldest_event_id(self) -> int:
        return int(self.details.get("oldest_event_id", 1))

    @property
    def resume_after(self) -> int:
        """The cursor that starts at the oldest kept event."""
        return self.oldest_event_id - 1

    @property
    def segment(self) -> str | None:
        """The archive segment holding what was asked for, when the server named one."""
        segment = self.details.get("segment")
        return None if segment is None else str(segment)


class RuntrackClient:
    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        max_backoff: float = 5.0,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=keepalive_expiry
        )
        self._http = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=timeout, limits=limits
        )
        self._timeout = timeout
        self._max_backoff = max_backoff

    async def __aenter__(self) -> RuntrackClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- runs ----------------------------------------------------------------------------------

    async def create_run(self, agent_id: str, **fields: Any) -> Run:
        return Run.model_validate(
            await self._json("POST", "/v1/runs", {"agent_id": agent_id, **fields})
        )

    async def get_run(self, run_id: str) -> Run:
        return Run.model_validate(await self._json("GET", f"/v1/runs/{run_id}"))

    async def list_runs(self, **filters: Any) -> tuple[list[Run], str | None]:
        """One page of runs and the cursor of the next (pass it back as ``after``)."""
        page = await self._json("GET", "/v1/runs", params=httpx.QueryParams(_params(filters)))
        runs = RunList.model_validate(page)
        return runs.items, runs.next_cursor

    async def claim(self, worker_id: str, **filters: Any) -> Claim | None:
        """The claimed run with what it resumes from, or None when nothing waits (after up to
        ``wait_seconds`` of waiting server-side, if given: the request's timeout grows by it)."""
        body = {"worker_id": worker_id, **filters}
        timeout = self._timeout + float(filters.get("wait_seconds") or 0)
        claimed = await self._json("POST", "/v1/runs/claim", body, timeout=timeout)
        return None if claimed is None else Claim.model_validate(claimed)

    async def append(
        self, run_id: str, events: Sequence[Mapping[str, Any]], **options: Any
    ) -> Appended:
        body = {"events": list(events), **options}
        return Appended.model_validate(await self._json("POST", f"/v1/runs/{run_id}/events", body))

    async def heartbeat(self, run_id: str, worker_id: str | None = None) -> Heartbeat:
        beat = await self._json("POST", f"/v1/runs/{run_id}/heartbeat", {"worker_id": worker_id})
        return Heartbeat.model_validate(beat)

    async def record_tool_result(
        self, run_id: str, tool_call_id: str, name: str, **outcome: Any
    ) -> ToolResultRecorded:
        """Record a tool call's ``tool_finished`` once (``status``, ``result`` or ``error``,
        ``duration_ms``); a repeat answers the recorded one with ``replayed`` set."""
        body = {"tool_call_id": tool_call_id, "name": name, **outcome}
        path = f"/v1/runs/{run_id}/tool-results"
        return ToolResultRecorded.model_validate(await self._json("POST", path, body))

    async def cancel(self, run_id: str, reason: str | None = None) -> Run:
        return Run.model_validate(
            await self._json("POST", f"/v1/runs/{run_id}/cancel", {"reason": reason})
        )

    async def resume(self, run_id: str) -> Run:
        return Run.model_validate(await self._json("POST", f"/v1/runs/{run_id}/resume"))

    async def answer(self, run_id: str, response: Any, question_id: str | None = None) -> Run:
        """Answer a run waiting on a human (its open question unless ``question_id`` names
        one); the run moves on through its lane."""
        body = {"response": response, "question_id": question_id}
        return Run.model_validate(await self._json("POST", f"/v1/runs/{run_id}/input", body))

    async def cancel_conversation(self, conversation_id: str, reason: str | None = None) -> Run:
        """Request cancellation of the conversation's current run (the one holding its lane,
        else the one waiting longest); ``RuntrackError`` 404 ``no_active_run`` when none."""
        path = f"/v1/conversations/{conversation_id}/cancel"
        return Run.model_validate(await self._json("POST", path, {"reason": reason}))

    async def messages(self, run_id: str) -> list[Message]:
        found = MessageList.model_validate(await self._json("GET", f"/v1/runs/{run_id}/messages"))
        return found.items

    async def usage(self, run_id: str) -> Usage:
        return Usage.model_validate(await self._json("GET", f"/v1/runs/{run_id}/usage"))

    async def journal(self, run_id: str) -> Journal:
        return Journal.model_validate(await self._json("GET", f"/v1/runs/{run_id}/journal"))

    async def events(
        self,
        after_event_id: int = 0,
        limit: int = 100,
        *,
        run_id: str | None = None,
        visibility: str | None = None,
    ) -> tuple[list[StoredEvent], int]:
        """A page of the log (or of one run's events) and the position to continue from."""
        path = "/v1/events" if run_id is None else f"/v1/runs/{run_id}/events"
        filters = {"after_event_id": after_event_id, "limit": limit, "visibility": visibility}
        page = await self._json("GET", path, params=httpx.QueryParams(_params(filters)))
        events = EventList.model_validate(page)
        return events.items, events.position

    async def head(self) -> int:
        """The id of the last event in the log."""
        return Ready.model_validate(await self._json("GET", "/readyz")).head_id

    async def verify(
        self,
        run_id: str | None = None,
        *,
        head: tuple[int, str] | None = None,
        public_key: str | Sequence[str] | None = None,
    ) -> AuditReport:
        """The chain check; ``model_fields_set`` holds what the server sent. ``head`` is a head
        kept earlier (event id, hash), ``public_key`` the key (or keys, in hex) signed heads
        are checked with."""
        wanted = {
            "run_id": run_id,
            "head": None if head is None else f"{head[0]}:{head[1]}",
            "public_key": [public_key] if isinstance(public_key, str) else public_key,
        }
        params = httpx.QueryParams(_params(wanted))
        return AuditReport.model_validate(
            await self._json("GET", "/v1/audit/verify", params=params)
        )

    async def chain_head(self) -> ChainHeadAnswer:
        """The latest signed head of the chain: what an auditor keeps."""
        return ChainHeadAnswer.model_validate(await self._json("GET", "/v1/audit/head"))

    async def export_page(
        self, after_event_id: int = 0, limit: int = 1000, *, visibility: str | None = None
    ) -> ExportPage:
        """A page of the whole log as an export holds it (others' events redacted)."""
        filters = {"after_event_id": after_event_id, "limit": limit, "visibility": visibility}
        params = httpx.QueryParams(_params(filters))
        return ExportPage.model_validate(await self._json("GET", "/v1/audit/export", params=params))

    # -- streams -------------------------------------------------------------------------------

    async def stream(
        self,
        *,
        run_id: str | None = None,
        conversation_id: str | None = None,
        after: int = 0,
        visibility: str | None = None,
    ) -> AsyncGenerator[StoredEvent, None]:
        """Follow a channel live, reconnecting as needed; each event exactly once, in order."""
        path, params = _channel(run_id, conversation_id, visibility)
        cursor, delay = after, 0.1
        while True:
            try:
                async for event, ended in self._connect(path, params, cursor):
                    if event is not None and event.id > cursor:
                        cursor = event.id
                        delay = 0.1
                        yield event
                    if ended:
                        return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                pass  # the connection dropped: resume from the cursor after a pause
            else:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _connect(
        self, path: str, params: dict[str, str], cursor: int
    ) -> AsyncIterator[tuple[StoredEvent | None, bool]]:
        headers = {"Accept": "text/event-stream"}
        if cursor:
            headers["Last-Event-ID"] = str(cursor)
        async with aconnect_sse(self._http, "GET", path, params=params, headers=headers) as source:
            if source.response.status_code == 204:
                yield None, True
                return
            if source.response.status_code >= 400:
                await source.response.aread()
                raise _error(source.response)
            async for sse in source.aiter_sse():
                if sse.event == "end":
                    yield None, True
                    return
                if sse.data:
                    yield StoredEvent.model_validate_json(sse.data), False
        raise httpx.RemoteProtocolError("the stream ended without an end event")

    async def wait(self, run_id: str) -> Run:
        """Return the run once it reaches a terminal status (follows its channel, no polling)."""
        run = await self.get_run(run_id)
        if not run.terminal:
            async for _ in self.stream(run_id=run_id, after=run.last_event_id):
                pass
        return await self.get_run(run_id)

    # -- plumbing ------------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: httpx.QueryParams | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the request's own, passed to httpx
    ) -> Any:
        response = await self._http.request(
            method,
            path,
            json=body,
            params=params,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        if response.status_code >= 400:
            raise _error(response)
        if response.status_code == 204:
            return None
        return response.json()


def _error(response: httpx.Response) -> RuntrackError:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return RuntrackError(response.status_code, "http_error", response.text[:200], {})
    kind = CursorExpiredError if response.status_code == 410 else RuntrackError
    return kind(response.status_code, error["code"], error["message"], error.get("details", {}))


def _channel(
    run_id: str | None, conversation_id: str | None, visibility: str | None
) -> tuple[str, dict[str, str]]:
    params = {"visibility": visibility} if visibility else {}
    if conversation_id is not None:
        if run_id is not None:
            params["run_id"] = run_id
        return f"/v1/conversations/{conversation_id}/agent-events", params
    if run_id is not None:
        return f"/v1/runs/{run_id}/events", params
    return "/v1/events", params


QueryValue = str | int | float | bool | None


def _params(filters: Mapping[str, Any]) -> list[tuple[str, QueryValue]]:
    pairs: list[tuple[str, QueryValue]] = []
    for name, value in filters.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(name, _text(v)) for v in values if v is not None]
    return pairs


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)
