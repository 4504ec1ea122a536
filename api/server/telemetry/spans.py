"""From a run's events to OpenTelemetry spans: a pure fold, one ``RunTrace`` per run.

No I/O and no clock: every id is a hash of run and event ids and every time a ``created_at`` of
the log, so folding the same events gives the same spans, byte for byte, whenever they are
exported again (after a crash, a restart or a resume). A span is emitted by the event that ends
it; the run's own span only by the status change that ends the run (OTLP cannot update a span),
so a run in progress shows its finished tool calls, steps and waits under a parent that has not
arrived yet (docs/telemetry.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from eventstore import PAYLOAD_MODELS, AgentEvent, EventType, RunStatus
from projections import TERMINAL

__all__ = [
    "MAX_CONTENT_CHARS",
    "MAX_SPAN_EVENTS",
    "MAX_SPAN_EVENT_CHARS",
    "SCOPE",
    "RunTrace",
    "SpanOptions",
    "span_id",
    "time_ns",
    "trace_id",
]

MAX_CONTENT_CHARS = 16_384
"""The longest content attribute (arguments, results, messages): a collector refuses requests
past a few MiB, and one tool result must not hold back every span behind it."""
MAX_SPAN_EVENTS = 1_000
"""Span events one run's span carries; later ones (every one after the first dropped) are
counted in ``runtrack.events_dropped``, so that the fold of a long run stays small and its span
within a collector's limits."""
MAX_SPAN_EVENT_CHARS = 1_048_576
"""The text (attribute keys and values) one run's span events may hold in all; later events are
dropped and counted too. With content, 1,000 events of 16 KiB would otherwise keep 16 MiB in
memory for one run, for a span that must be trimmed to be sent."""
_EVENT_OVERHEAD = 128
"""What a span event or an open tool call is reckoned to weigh besides its text."""
_FOLD_OVERHEAD = 1_024
SCOPE = InstrumentationScope("runtrack")
_ERROR_STATUSES = frozenset({RunStatus.FAILED.value, RunStatus.TIMED_OUT.value})
_WAITS = frozenset({RunStatus.WAITING_ON_LANE.value, RunStatus.WAITING_ON_HUMAN.value})
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SpanOptions:
    """What every span of one export shares: whether content goes out, and the resources."""

    content: bool = False
    service_name: str = "runtrack"
    _resources: dict[str, Resource] = field(default_factory=dict, compare=False, repr=False)

    def resource(self, organization_id: str) -> Resource:
        """One resource per organization (one ``ResourceSpans`` each in a request)."""
        found = self._resources.get(organization_id)
        if found is None:
            found = Resource(
                {"service.name": self.service_name, "runtrack.organization.id": organization_id}
            )
            self._resources[organization_id] = found
        return found


def trace_id(root_run_id: str) -> int:
    """A run tree's trace id: 128 bits of a hash of its root run's id (never zero)."""
    return _hash_int(f"trace/{root_run_id}", 16)


def span_id(run_id: str, key: str) -> int:
    """A span's id: 64 bits of a hash of its run's id and what names it within the run."""
    return _hash_int(f"span/{run_id}/{key}", 8)


def _hash_int(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:size], "big")
    return value or 1


def time_ns(created_at: str) -> int:
    """Nanoseconds since the epoch of a ``created_at`` (microseconds exact, no float)."""
    delta = datetime.fromisoformat(created_at) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _json(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    )
    return text if len(text) <= MAX_CONTENT_CHARS else text[:MAX_CONTENT_CHARS] + "…"


@dataclass
class _OpenTool:
    name: str
    started_ns: int
    arguments: str | None
    """Only with content, and already cut: what the span will carry, nothing more."""


@dataclass
class _Wait:
    status: str
    started_ns: int
    event_id: int
    question_id: str | None = None


Attributes = dict[str, str | int | float | bool]


@dataclass
class RunTrace:
    """The fold of one run's events into spans. ``feed`` each event in sequence order."""

    run_id: str
    organization_id: str
    root_run_id: str
    options: SpanOptions
    parent_run_id: str | None = None
    agent: str = "unknown"
    conversation_id: str = ""
    started_ns: int | None = None
    last_ns: int | None = None
    status: str = RunStatus.QUEUED.value
    input_tokens: int = 0
    output_tokens: int = 0
    tools: dict[str, _OpenTool] = field(default_factory=dict)
    wait: _Wait | None = None
    question_id: str | None = None
    """The open question to a person (asked just before or after the wait begins)."""
    events: list[Event] = field(default_factory=list)
    events_dropped: int = 0
    event_chars: int = 0
    """The text the span events hold (``MAX_SPAN_EVENT_CHARS``)."""
    tool_chars: int = 0
    """The text the open tool calls hold (their cut arguments, with content)."""

    context: SpanContext = field(init=False)
    """The run span's context: its children's parent."""

    def __post_init__(self) -> None:
        run_span = span_id(self.run_id, "run")
        self.context = SpanContext(trace_id(self.root_run_id), run_span, False, _SAMPLED)

    @property
    def weight(self) -> int:
        """About the bytes this fold keeps in memory (the exporter bounds their sum)."""
        held = len(self.events) + len(self.tools)
        return _FOLD_OVERHEAD + held * _EVENT_OVERHEAD + self.event_chars + self.tool_chars

    def feed(self, event: AgentEvent) -> list[ReadableSpan]:
        """Fold ``event`` in; the spans it ends (none for most events)."""
        now = time_ns(event.created_at)
        if self.started_ns is None:
            self.started_ns = now
            self.conversation_id = event.conversation_id
        handler = _HANDLERS.get(event.event_type, RunTrace._note)
        spans = handler(self, event, now)
        self.last_ns = now
        return spans

    # -- handlers, one per event type ----------------------------------------------------------

    def _created(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        self.agent = str(event.payload.get("agent_id") or "unknown")
        self.parent_run_id = event.payload.get("parent_run_id")
        self.started_ns = now
        return []

    def _status_changed(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        payload = event.payload
        target = str(payload.get("to"))
        spans = self._end_wait(event, now)
        self.status = target
        self._add_event("run_status_changed", now, _status_attributes(payload))
        if target in _WAITS:
            question = self.question_id if target == RunStatus.WAITING_ON_HUMAN else None
            self.wait = _Wait(target, now, event.id, question)
        if target in TERMINAL:
            spans += self._unfinished_tools(now)
            spans.append(self._run_span(event, now))
        return spans

    def _end_wait(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        wait, self.wait = self.wait, None
        if wait is None:
            return []
        attributes: Attributes = {
            "runtrack.wait.status": wait.status,
            "runtrack.run.id": self.run_id,
        }
        if wait.question_id is not None:
            attributes["runtrack.question.id"] = wait.question_id
        name = f"wait {wait.status}"
        return [self._child(name, f"wait/{wait.event_id}", wait.started_ns, now, attributes)]

    def _tool_started(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        payload = event.payload
        call_id = str(payload["tool_call_id"])
        given = payload.get("arguments")
        arguments = _json(given) if self.options.content and given is not None else None
        self._forget_tool(call_id)
        self.tools[call_id] = _OpenTool(str(payload["name"]), now, arguments)
        self.tool_chars += len(arguments or "")
        return []

    def _forget_tool(self, call_id: str) -> _OpenTool | None:
        opened = self.tools.pop(call_id, None)
        if opened is not None:
            self.tool_chars -= len(opened.arguments or "")
        return opened

    def _tool_finished(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        payload = event.payload
        call_id = str(payload["tool_call_id"])
        opened = self._forget_tool(call_id)
        start = opened.started_ns if opened else now - int((payload.get("duration_ms") or 0) * 1e6)
        arguments = opened.arguments if opened else None
        span = self._tool_span(str(payload["name"]), call_id, start, now, arguments, payload)
        return [span]

    def _tool_span(
        self,
        name: str,
        call_id: str,
        start: int,
        end: int,
        arguments: str | None,
        finished: dict[str, Any] | None,
    ) -> ReadableSpan:
        attributes: Attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call_id,
        }
        status = Status(StatusCode.UNSET)
        if finished is None:
            attributes["runtrack.tool.unfinished"] = True
            attributes["error.type"] = "unfinished"
            status = Status(StatusCode.ERROR, "the run ended before the tool call finished")
        elif finished.get("status") == "error":
            attributes["error.type"] = "tool_error"
            status = Status(StatusCode.ERROR, self._content(finished.get("error")))
        if self.options.content:
            if arguments is not None:
                attributes["gen_ai.tool.call.arguments"] = arguments
            if finished is not None and finished.get("result") is not None:
                attributes["gen_ai.tool.call.result"] = _json(finished["result"])
        span_name = f"execute_tool {name}"
        return self._child(span_name, f"tool/{call_id}", start, end, attributes, status)

    def _unfinished_tools(self, now: int) -> list[ReadableSpan]:
        return [
            self._tool_span(tool.name, call_id, tool.started_ns, now, tool.arguments, None)
            for call_id, tool in self.tools.items()
        ]

    def _step(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        payload = event.payload
        model = payload.get("model")
        duration = payload.get("duration_ms")
        start = now - int(duration * 1e6) if duration is not None else (self.last_ns or now)
        inputs, outputs = (
            int(payload.get("prompt_tokens", 0)),
            int(payload.get("completion_tokens", 0)),
        )
        self.input_tokens += inputs
        self.output_tokens += outputs
        attributes: Attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": inputs,
            "gen_ai.usage.output_tokens": outputs,
        }
        if model:
            attributes["gen_ai.request.model"] = str(model)
        if payload.get("ttft_ns") is not None:
            attributes["runtrack.step.ttft_ns"] = int(payload["ttft_ns"])
        name = f"chat {model}" if model else "chat"
        return [
            self._child(name, f"event/{event.id}", start, now, attributes, kind=SpanKind.CLIENT)
        ]

    def _question(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        payload = event.payload
        self.question_id = str(payload.get("question_id"))
        if self.wait is not None and self.wait.status == RunStatus.WAITING_ON_HUMAN.value:
            self.wait.question_id = self.question_id
        attributes: Attributes = {"runtrack.question.id": str(payload.get("question_id"))}
        if self.options.content:
            attributes["runtrack.question"] = _json(payload.get("question", ""))
        self._add_event(event.event_type, now, attributes)
        return []

    def _answered(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        self.question_id = None
        return self._note(event, now)

    def _note(self, event: AgentEvent, now: int) -> list[ReadableSpan]:
        """Any other event: a span event on the run's span, content only with the option."""
        describe = _DESCRIBERS.get(event.event_type)
        attributes = describe(event.payload) if describe else {}
        if self.options.content and _is_content(event.event_type):
            attributes["runtrack.content"] = _json(event.payload)
        self._add_event(event.event_type, now, attributes)
        return []

    # -- building spans ------------------------------------------------------------------------

    def _add_event(self, name: str, now: int, attributes: Attributes) -> None:
        chars = len(name) + sum(len(key) + len(str(value)) for key, value in attributes.items())
        full = self.event_chars + chars > MAX_SPAN_EVENT_CHARS
        if not self.events_dropped and len(self.events) < MAX_SPAN_EVENTS and not full:
            self.events.append(Event(name, attributes, now))
            self.event_chars += chars
        else:
            self.events_dropped += 1

    def _content(self, text: Any) -> str | None:
        return None if not self.options.content or text is None else _json(text)

    def _child(
        self,
        name: str,
        key: str,
        start: int,
        end: int,
        attributes: Attributes,
        status: Status | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> ReadableSpan:
        parent = self.context
        own = SpanContext(parent.trace_id, span_id(self.run_id, key), False, _SAMPLED)
        attributes.setdefault("runtrack.run.id", self.run_id)
        return self._span(name, own, parent, start, end, attributes, status, kind, ())

    def _run_span(self, event: AgentEvent, now: int) -> ReadableSpan:
        payload = event.payload
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.agent,
            "gen_ai.conversation.id": self.conversation_id,
            "gen_ai.usage.input_tokens": self.input_tokens,
            "gen_ai.usage.output_tokens": self.output_tokens,
            "runtrack.run.id": self.run_id,
            "runtrack.run.status": self.status,
        }
        if payload.get("stop_reason"):
            attributes["runtrack.run.stop_reason"] = str(payload["stop_reason"])
        if self.parent_run_id:
            attributes["runtrack.run.parent_id"] = self.parent_run_id
        if self.events_dropped:
            attributes["runtrack.events_dropped"] = self.events_dropped
        status = Status(StatusCode.UNSET)
        if self.status in _ERROR_STATUSES:
            attributes["error.type"] = str(payload.get("stop_reason") or self.status)
            status = Status(StatusCode.ERROR, self._content(payload.get("detail")))
        parent = None
        if self.parent_run_id:
            parent = SpanContext(
                self.context.trace_id, span_id(self.parent_run_id, "run"), False, _SAMPLED
            )
        start = self.started_ns if self.started_ns is not None else now
        name = f"invoke_agent {self.agent}"
        return self._span(
            name,
            self.context,
            parent,
            start,
            now,
            attributes,
            status,
            SpanKind.INTERNAL,
            tuple(self.events),
        )

    def _span(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start: int,
        end: int,
        attributes: Attributes,
        status: Status | None,
        kind: SpanKind,
        events: tuple[Event, ...],
    ) -> ReadableSpan:
        return ReadableSpan(
            name,
            context,
            parent,
            self.options.resource(self.organization_id),
            attributes,
            events,
            kind=kind,
            status=status or Status(StatusCode.UNSET),
            start_time=min(start, end),
            end_time=end,
            instrumentation_scope=SCOPE,
        )


def _status_attributes(payload: dict[str, Any]) -> Attributes:
    attributes: Attributes = {"runtrack.status.to": str(payload.get("to"))}
    for key, name in (("from", "runtrack.status.from"), ("stop_reason", "runtrack.stop_reason")):
        if payload.get(key):
            attributes[name] = str(payload[key])
    return attributes


def _checkpoint(payload: dict[str, Any]) -> Attributes:
    return {
        "runtrack.checkpoint.id": str(payload["checkpoint_id"]),
        "runtrack.checkpoint.kind": str(payload["kind"]),
    }


def _child_run(payload: dict[str, Any]) -> Attributes:
    attributes: Attributes = {"runtrack.child_run.id": str(payload["child_run_id"])}
    if payload.get("status"):
        attributes["runtrack.child_run.status"] = str(payload["status"])
    return attributes


def _message(payload: dict[str, Any]) -> Attributes:
    return {"gen_ai.message.role": str(payload.get("role"))}


def _answer(payload: dict[str, Any]) -> Attributes:
    attributes: Attributes = {}
    if payload.get("question_id"):
        attributes["runtrack.question.id"] = str(payload["question_id"])
    return attributes


_DESCRIBERS: dict[str, Callable[[dict[str, Any]], Attributes]] = {
    EventType.CHECKPOINT_CREATED: _checkpoint,
    EventType.CHILD_RUN_STARTED: _child_run,
    EventType.CHILD_RUN_FINISHED: _child_run,
    EventType.MESSAGE_CREATED: _message,
    EventType.HUMAN_INPUT: _answer,
}
_CONTENT_TYPES = frozenset(
    {
        EventType.CHECKPOINT_CREATED,
        EventType.JOURNAL_UPDATED,
        EventType.MESSAGE_CREATED,
        EventType.HUMAN_INPUT,
        EventType.CANCEL_REQUESTED,
        EventType.METADATA_UPDATED,
    }
)
"""Span events whose payload is content: sent whole only with ``--otel-content``. Custom
events' payloads are too (any type without a core payload model)."""


def _is_content(event_type: str) -> bool:
    return event_type in _CONTENT_TYPES or event_type not in PAYLOAD_MODELS


_Handler = Callable[[RunTrace, AgentEvent, int], list[ReadableSpan]]
_HANDLERS: dict[str, _Handler] = {
    EventType.RUN_CREATED: RunTrace._created,
    EventType.RUN_STATUS_CHANGED: RunTrace._status_changed,
    EventType.TOOL_STARTED: RunTrace._tool_started,
    EventType.TOOL_FINISHED: RunTrace._tool_finished,
    EventType.STEP_COMPLETED: RunTrace._step,
    EventType.HUMAN_INPUT_REQUESTED: RunTrace._question,
    EventType.HUMAN_INPUT: RunTrace._answered,
}
