"""The run context a handler reports through: every call is a safe boundary for a cancel.

Tool calls and questions are keyed per handler attempt (``name-n``, ``q-n``) so that a handler
called again on a resumed run meets its recorded results instead of redoing the work.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from api.client.async_client import RuntrackClient, RuntrackError
from api.client.models import Appended, Claim, Run, StoredEvent
from api.client.retrying import RETRY_SECONDS, retrying
from api.client.worker_errors import (
    HumanInputPending,
    RunCancelled,
    RunLost,
    ToolCallFailed,
    ToolCallUnfinished,
)

__all__ = ["RunContext", "ToolStart"]

T = TypeVar("T")
RESUMABLE_KINDS = frozenset({"input", "llm_response", "tool_result", "journal_update"})
"""Checkpoint kinds a failed or timed-out run resumes from (docs/lifecycle.md)."""


@dataclass(frozen=True)
class ToolStart:
    """What ``begin_tool`` decided: call ``fn`` (``replayed`` False) or use ``result``."""

    call_id: str
    name: str
    replayed: bool
    result: Any = None


class RunContext:
    """One claimed run, as its handler sees it (``docs/workers.md``)."""

    def __init__(
        self,
        client: RuntrackClient,
        claim: Claim,
        worker_id: str,
        *,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.client = client
        self.retry_seconds = retry_seconds
        """How long a call is repeated through transport errors (``api/client/retrying.py``)."""
        self._key_prefix = uuid.uuid4().hex
        self._appends = 0
        self.run: Run = claim.run
        self.worker_id = worker_id
        self.state: Any = (
            None if claim.checkpoint is None else claim.checkpoint.payload.get("state")
        )
        """The latest checkpoint's state (``None`` on a fresh run): where a resumed run goes on."""
        self.resumed = claim.checkpoint is not None or bool(claim.tool_results)
        self.cancel_requested = claim.run.cancel_requested
        self.cancelled = asyncio.Event()
        """Set once a cancel is known: a long wait may race it."""
        self.checkpoint_kind = claim.run.checkpoint_kind
        self._finished = {e.payload["tool_call_id"]: e.payload for e in claim.tool_results}
        self._started: dict[str, Mapping[str, Any]] = {}
        self._answers: dict[str, Any] = {}
        self._counts: Counter[str] = Counter()
        self.cancel_raised = False
        self.lost: str | None = None
        """The run's status once it is no longer ours; then every call raises ``RunLost``."""
        self.suspended = False
        if self.cancel_requested:
            self.cancelled.set()

    @property
    def run_id(self) -> str:
        return self.run.id

    # -- reporting -----------------------------------------------------------------------------

    async def message(self, role: str, content: str) -> None:
        await self.append([_event("message_created", role=role, content=content)])

    async def checkpoint(self, kind: str, state: Any = None) -> None:
        """Record where the run may resume from; a resumed handler gets ``state`` back."""
        checkpoint_id = f"{self.run_id}-{uuid.uuid4().hex[:12]}"
        await self.append(
            [_event("checkpoint_created", checkpoint_id=checkpoint_id, kind=kind, state=state)]
        )
        self.state, self.checkpoint_kind = state, kind

    async def journal(self, **fields: Any) -> None:
        """``objective``, ``current_state``, ``blockers``, ``next_action``, ``findings``,
        ``handoff_next_action``: the run's working notes, as the dashboard shows them."""
        await self.append([_event("journal_updated", **fields)])

    async def step(
        self,
        model: str | None = None,
        usage: Mapping[str, int] | None = None,
        ttft: float | None = None,
        *,
        duration: float | None = None,
    ) -> None:
        """One model call: ``usage`` holds ``prompt_tokens``/``completion_tokens``; ``ttft``
        and ``duration`` are seconds."""
        payload: dict[str, Any] = {"model": model, **(usage or {})}
        if ttft is not None:
            payload["ttft_ns"] = int(ttft * 1e9)
        if duration is not None:
            payload["duration_ms"] = duration * 1000
        await self.append([{"event_type": "step_completed", "payload": payload}])

    async def progress(self, patch: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        """Merge ``patch`` and ``fields`` into the run's metadata (RFC 7386: ``None`` deletes a
        key); numeric ``progress`` and ``total`` draw a progress bar in the dashboard."""
        merged = {**(patch or {}), **fields}
        await self.append([_event("metadata_updated", patch=merged)])

    async def check(self) -> None:
        """A boundary with nothing to record: raises ``RunCancelled`` once a cancel is known."""
        self.boundary()

    # -- tool calls ----------------------------------------------------------------------------

    async def tool(
        self,
        name: str,
        arguments: Any,
        fn: Callable[..., Any],
        *,
        call_id: str | None = None,
        retry: bool = False,
    ) -> Any:
        """Call ``fn(**arguments)`` (or ``fn(arguments)`` when not a mapping) as a recorded tool
        call, or return the result recorded for this call on a previous attempt."""
        start = await self.begin_tool(name, arguments, call_id=call_id, retry=retry)
        if start.replayed:
            return start.result
        began = time.perf_counter()
        try:
            result = _call(fn, arguments)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            await self.end_tool(start, began, error=exc)
            raise AssertionError("end_tool raises on an error") from exc  # pragma: no cover
        await self.end_tool(start, began, result=result)
        return result

    async def begin_tool(
        self, name: str, arguments: Any, *, call_id: str | None = None, retry: bool = False
    ) -> ToolStart:
        """Replay a finished call, refuse an unfinished one, or record ``tool_started``."""
        self.boundary()
        self._counts[name] += 1
        key = call_id or f"{name}-{self._counts[name]}"
        if key in self._finished:
            return ToolStart(key, name, True, _replayed_result(self._finished[key]))
        if key in self._started and not retry:
            self._counts[name] -= 1  # not a call made: the retry gets the same id
            raise ToolCallUnfinished(name, key, self._started[key].get("arguments"))
        started = _event("tool_started", tool_call_id=key, name=name, arguments=arguments)
        await self.append([started, _status("waiting_on_tool")])
        return ToolStart(key, name, False)

    async def end_tool(
        self, start: ToolStart, began: float, *, result: Any = None, error: Exception | None = None
    ) -> None:
        """Record ``tool_finished`` through the envelope and move the run back to running."""
        outcome: dict[str, Any] = {"duration_ms": (time.perf_counter() - began) * 1000}
        if error is None:
            outcome |= {"status": "success", "result": result}
        else:
            outcome |= {"status": "error", "error": f"{type(error).__name__}: {error}"[:4000]}
        await self._guard(
            self._retrying(
                lambda: self.client.record_tool_result(
                    self.run_id, start.call_id, start.name, **outcome
                ),
                "a tool result",
            )
        )
        self._finished[start.call_id] = {
            "tool_call_id": start.call_id,
            "name": start.name,
            **outcome,
        }
        await self.append([_status("running")], check=False)
        if error is not None:
            raise ToolCallFailed(start.name, start.call_id, outcome["error"]) from error

    # -- humans --------------------------------------------------------------------------------

    async def ask_human(
        self,
        question: str,
        *,
        choices: Sequence[str] | None = None,
        question_id: str | None = None,
    ) -> Any:
        """The answer to ``question``: recorded on a previous attempt, or asked now, in which
        case the handler unwinds (``HumanInputPending``) and is called again once answered."""
        self.boundary()
        self._counts["\0question"] += 1
        key = question_id or f"q-{self._counts[chr(0) + 'question']}"
        if key in self._answers:
            return self._answers[key]
        asked = _event(
            "human_input_requested",
            question_id=key,
            question=question,
            choices=None if choices is None else list(choices),
        )
        await self.append([asked, _status("waiting_on_human")])
        self.suspended = True
        raise HumanInputPending(self.run_id, key)

    # -- child runs ----------------------------------------------------------------------------

    async def start_child(self, agent_id: str, **fields: Any) -> Run:
        """Create a child run (``message``, ``metadata`` … as ``create_run``); a resumed handler
        gets the same child back (the creation is keyed by this run and the call's order)."""
        self.boundary()
        self._counts["\0child"] += 1
        key = f"{self.run_id}/child-{self._counts[chr(0) + 'child']}"
        child = await self._guard(
            self._retrying(
                lambda: self.client.create_run(
                    agent_id, parent_run_id=self.run_id, idempotency_key=key, **fields
                ),
                "a child run's creation",
            )
        )
        if child.id not in self.run.child_run_ids:
            await self.append(
                [_event("child_run_started", child_run_id=child.id, agent_id=agent_id)]
            )
        return child

    async def wait_child(self, child: Run | str) -> Run:
        """Wait (``waiting_on_child``) until the child ends; a cancel of this run ends the wait."""
        child_id = child if isinstance(child, str) else child.id
        await self.append([_status("waiting_on_child")])
        waiting = asyncio.ensure_future(
            self._retrying(lambda: self.client.wait(child_id), "a child run's wait")
        )
        cancelled = asyncio.ensure_future(self.cancelled.wait())
        await asyncio.wait({waiting, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        cancelled.cancel()
        if not waiting.done():
            waiting.cancel()
            self.boundary()
        done = waiting.result()
        finished = _event(
            "child_run_finished",
            child_run_id=child_id,
            status=done.status,
            stop_reason=done.stop_reason,
        )
        await self.append([finished, _status("running")], check=False)
        return done

    # -- plumbing ------------------------------------------------------------------------------

    def boundary(self) -> None:
        """Raise what the run's state calls for at a safe point: lost, then cancelled."""
        if self.lost == "cancelled":
            self.cancel_raised = True
            raise RunCancelled(self.run_id)
        if self.lost is not None:
            raise RunLost(self.run_id, self.lost)
        if self.cancel_requested:
            self.cancel_raised = True
            raise RunCancelled(self.run_id)

    def note_cancel(self, requested: bool) -> None:
        if requested and not self.cancel_requested:
            self.cancel_requested = True
            self.cancelled.set()

    def note_lost(self, status: str | None) -> None:
        self.lost = status or "unknown"
        self.cancelled.set()

    def replay_from(self, started: Sequence[StoredEvent], answers: Sequence[StoredEvent]) -> None:
        """Take the calls a previous attempt started and the answers a human gave."""
        for event in started:
            call_id = event.payload["tool_call_id"]
            if call_id not in self._finished:
                self._started[call_id] = event.payload
        for event in answers:
            self._answers[str(event.payload.get("question_id"))] = event.payload.get("response")

    async def append(self, events: list[dict[str, Any]], *, check: bool = True) -> Appended:
        """Append as one batch; the answer's cancel flag makes this call raise ``RunCancelled``
        (``check`` False defers that to the next call, for a status step back to running)."""
        if check:
            self.boundary()
        appended = await self._guard(self.record(events))
        self.note_cancel(appended.run.cancel_requested)
        if check:
            self.boundary()
        return appended

    async def record(self, events: list[dict[str, Any]]) -> Appended:
        """Append as one batch under a key of its own, repeated through transport errors: a
        repeat of an append the server made answers with the events it wrote, writing none."""
        self._appends += 1
        key = f"{self._key_prefix}-{self._appends}"
        return await self._retrying(
            lambda: self.client.append(self.run_id, events, idempotency_key=key), "an append"
        )

    def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> Awaitable[T]:
        return retrying(call, f"run {self.run_id}: {what}", self.retry_seconds)

    async def _guard(self, call: Awaitable[T]) -> T:
        """A refusal because the run moved on without us (ended, taken over) becomes
        ``RunLost`` (or ``RunCancelled`` when it was cancelled)."""
        try:
            return await call
        except RuntrackError as exc:
            if exc.status not in (404, 409):
                raise
            run = await self._retrying(lambda: self.client.get_run(self.run_id), "a run read")
            if not run.terminal and run.status not in ("waiting_on_human", "queued"):
                raise
            self.note_lost(run.status)
            if run.status == "cancelled":
                self.cancel_raised = True
                raise RunCancelled(self.run_id) from exc
            raise RunLost(self.run_id, run.status) from exc


def _event(event_type: str, **payload: Any) -> dict[str, Any]:
    return {"event_type": event_type, "payload": payload}


def _status(to: str) -> dict[str, Any]:
    return {"event_type": "run_status_changed", "payload": {"to": to}}


def _call(fn: Callable[..., Any], arguments: Any) -> Any:
    if isinstance(arguments, Mapping):
        return fn(**arguments)
    return fn() if arguments is None else fn(arguments)


def _replayed_result(payload: Mapping[str, Any]) -> Any:
    if payload.get("status") == "error":
        name, call_id = str(payload.get("name")), str(payload.get("tool_call_id"))
        raise ToolCallFailed(name, call_id, payload.get("error"))
    return payload.get("result")
