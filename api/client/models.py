"""The wire format: pydantic models of request bodies and responses, defined once.

The server validates bodies with them and builds ``/openapi.json`` from them; the client parses
answers with them. Shapes that clients rely on are fixed by docs/api.md; fields may be added,
never renamed. Nothing here imports the server or the store (``tests/api/client/test_imports.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.client.contract import (
    CALLBACK_URL_PATTERN,
    EVENT_TYPE_PATTERN,
    IDENTIFIER_PATTERN,
    INTEGRAL,
    MAX_CLAIM_WAIT_SECONDS,
    MAX_EVENTS_PER_APPEND,
    MAX_ID_CHARS,
    MAX_INTEGER,
    SERVER_WRITTEN_TYPES,
)

_IDENTIFIER: dict[str, Any] = {"pattern": IDENTIFIER_PATTERN}
"""Identifiers are checked by the store (eventstore/appending.py); the schema says what it takes."""

__all__ = [
    "AgentStatus",
    "AppendEventsBody",
    "Appended",
    "AppendedRun",
    "AuditReport",
    "CancelBody",
    "ChainHeadAnswer",
    "Claim",
    "ClaimBody",
    "CreateRunBody",
    "DurationBucket",
    "Error",
    "ErrorDetail",
    "EventBody",
    "EventList",
    "ExportPage",
    "Health",
    "Heartbeat",
    "HeartbeatBody",
    "InputBody",
    "Journal",
    "JournalEntry",
    "JournalUpdate",
    "Me",
    "Message",
    "MessageList",
    "NotReady",
    "Panel",
    "Question",
    "Ready",
    "Recovery",
    "Run",
    "RunList",
    "RunStats",
    "StatusHistory",
    "StatusSample",
    "Step",
    "StoredEvent",
    "ToolResultBody",
    "ToolResultList",
    "ToolResultRecorded",
    "Usage",
]


class _Body(BaseModel):
    """Strict: ``false`` is not a number, ``1`` not a string (what the schema says)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CreateRunBody(_Body):
    agent_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)
    conversation_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_CHARS, json_schema_extra=_IDENTIFIER
    )
    lane_key: str | None = Field(
        default=None, min_length=1, max_length=400, pattern=IDENTIFIER_PATTERN
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = Field(
        default=None, max_length=2000, json_schema_extra={"pattern": CALLBACK_URL_PATTERN}
    )
    parent_run_id: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN
    )
    message: str | None = Field(default=None, description="A first user message for the run")
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_CHARS, json_schema_extra=_IDENTIFIER
    )


class EventBody(_Body):
    event_type: str = Field(
        min_length=1, max_length=200, json_schema_extra={"pattern": EVENT_TYPE_PATTERN}
    )
    """Checked by the store (``normalise_payload``), which names the core types when refusing."""
    payload: dict[str, Any] = Field(default_factory=dict)
    visibility: Literal["user", "operator", "internal"] | None = None

    @field_validator("event_type")
    @classmethod
    def _not_server_written(cls, value: str) -> str:
        if value in SERVER_WRITTEN_TYPES:
            raise ValueError(f"{value} events are written by the server only, never appended")
        return value


class AppendEventsBody(_Body):
    events: list[EventBody] = Field(min_length=1, max_length=MAX_EVENTS_PER_APPEND)
    expected_sequence: Annotated[int, Field(ge=0, le=MAX_INTEGER), INTEGRAL] | None = None
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_CHARS, json_schema_extra=_IDENTIFIER
    )


class ClaimBody(_Body):
    worker_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)
    agent_id: str | None = Field(default=None, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)
    lane_key: str | None = Field(default=None, max_length=400, pattern=IDENTIFIER_PATTERN)
    wait_seconds: float = Field(default=0, ge=0, le=MAX_CLAIM_WAIT_SECONDS)
    """How long to wait for a claimable run when there is none (204 after it)."""


class HeartbeatBody(_Body):
    worker_id: str | None = Field(default=None, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)


class CancelBody(_Body):
    reason: str | None = Field(default=None, max_length=2000)


class InputBody(_Body):
    """A person's answer to a run waiting on a human; ``question_id`` defaults to the open one."""

    response: Any = Field(description="Any JSON value")
    question_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN
    )


class ToolResultBody(_Body):
    tool_call_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)
    name: str = Field(min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)
    status: Literal["success", "error"] = "success"
    result: Any = None
    error: str | None = None
    duration_ms: float | None = Field(default=None, ge=0)


class Question(BaseModel):
    """A ``human_input_requested`` payload: what the run asks a person."""

    question_id: str
    question: str
    choices: list[str] | None


class Run(BaseModel):
    """A run as the API shows it: ``id`` is the run id (the shape of the systems runtrack
    replaces, docs/design.md).

    Its content fields (``journal``, ``detail``, ``error``, ``checkpoint_id``,
    ``checkpoint_kind``, ``tools_used``, ``callback_error``) come only from events the key may
    receive on a stream; the rest is the run's summary, the same for every role.
    """

    id: str
    run_id: str
    organization_id: str
    conversation_id: str
    agent_id: str
    lane_key: str
    parent_run_id: str | None
    status: str
    created_at: str
    created_event_id: int
    last_event_id: int
    last_sequence: int
    updated_at: str
    status_changed_at: str
    stop_reason: str | None
    detail: str | None
    error: str | None
    cancel_requested: bool
    cancel_requested_at: str | None
    started_at: str | None
    completed_at: str | None
    total_duration_ns: int | None
    ttft_ns: int | None
    num_steps: int
    num_messages: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    tools_used: list[str]
    child_run_ids: list[str]
    checkpoint_id: str | None
    checkpoint_kind: str | None
    resume_available: bool
    journal: dict[str, Any] | None
    callback_url: str | None
    callback_sent_at: str | None
    callback_status_code: int | None
    callback_error: str | None
    callback_attempts: int
    callback_pending: bool
    """A terminal run whose callback has neither succeeded nor given up yet."""
    callback_delivery_id: str | None
    """Stable per terminal episode: receivers dedupe on it (``X-Runtrack-Delivery``)."""
    metadata: dict[str, Any]
    terminal: bool
    question: Question | None = None
    """The open question to a person (content: from an event the key may see)."""


class StoredEvent(BaseModel):
    id: int
    event_type: str
    run_id: str
    conversation_id: str
    organization_id: str
    sequence: int
    visibility: str
    payload: dict[str, Any]
    created_at: str
    prev_hash: str
    hash: str


class RunList(BaseModel):
    """A page of runs; ``next_cursor`` goes back as ``after``, ``prev_cursor`` as ``before``."""

    items: list[Run]
    next_cursor: str | None = None
    prev_cursor: str | None = None


class EventList(BaseModel):
    """A page of the log in id order; ``head`` is the log's last id when the page was read."""

    items: list[StoredEvent]
    next_cursor: str | None = None
    position: int
    head: int


class Claim(BaseModel):
    """A claimed run with what a worker resumes from: its latest checkpoint, its tool results,
    its questions (``human_input_requested``) and their answers (``human_input``), the tool
    calls that started and never finished (``tool_started`` without ``tool_finished``), and
    the heartbeat timing the server expects."""

    run: Run
    checkpoint: StoredEvent | None
    tool_results: list[StoredEvent]
    human_inputs: list[StoredEvent]
    questions: list[StoredEvent]
    tool_calls_started: list[StoredEvent]
    heartbeat_timeout_seconds: float
    """A run silent this long is timed out by the reconciler."""
    heartbeat_interval_seconds: float
    """How often to heartbeat: a third of the timeout."""


class ToolResultRecorded(BaseModel):
    event: StoredEvent
    replayed: bool


class DurationBucket(BaseModel):
    below_ms: int | None
    """The bucket's upper bound; ``None`` for the last, unbounded one."""
    count: int


class RunStats(BaseModel):
    total: int
    by_status: dict[str, int]
    durations: list[DurationBucket]


class StatusSample(BaseModel):
    at: str
    """The moment counted, UTC; one second after the sample before it."""
    by_status: dict[str, int]
    """Runs in each status at that moment (statuses with none left out)."""


class StatusHistory(BaseModel):
    """The board's "runs by status, last minute" chart, filled at load: oldest sample first,
    the last one taken when the request was answered."""

    seconds: int
    samples: list[StatusSample]


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class Error(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


class AppendedRun(BaseModel):
    """What a worker checks after each append: whether to stop."""

    status: str
    cancel_requested: bool


class Appended(BaseModel):
    """The events an append wrote (or, for a retried idempotency key, wrote before)."""

    events: list[StoredEvent]
    run: AppendedRun


class Heartbeat(BaseModel):
    run_id: str
    status: str
    cancel_requested: bool


class ToolResultList(BaseModel):
    items: list[StoredEvent]


class Message(BaseModel):
    """A ``message_created`` event's payload, with where it stands in the log."""

    id: int
    sequence: int
    created_at: str
    role: str
    content: str


class MessageList(BaseModel):
    items: list[Message]


class Step(BaseModel):
    """A ``step_completed`` event's payload, with the event it came from."""

    event_id: int
    created_at: str
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: float | None = None
    ttft_ns: int | None = None


class Usage(BaseModel):
    """The run's token counters (whole) and the steps the key may see."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    num_steps: int
    steps: list[Step]


class JournalEntry(BaseModel):
    """A ``journal_updated`` event's payload."""

    objective: str | None = None
    current_state: str | None = None
    blockers: list[str] = Field(default_factory=list)
    next_action: str | None = None
    findings: list[str] = Field(default_factory=list)
    handoff_next_action: str | None = None


class _Stamp(BaseModel):
    id: int
    created_at: str


class JournalUpdate(JournalEntry, _Stamp):
    """One update, with its event's id and time first (the bases' fields come in reverse)."""


class Journal(BaseModel):
    current: JournalEntry | None
    """The latest update the key may see."""
    history: list[JournalUpdate]


class Recovery(BaseModel):
    """The handoff a failed, timed-out or cancelled run shows."""

    label: str
    error: str | None
    journal: dict[str, Any] | None
    handoff_next_action: str | None
    can_resume: bool


class Panel(BaseModel):
    """What the conversation's status panel shows and offers."""

    status: str
    label: str
    detail: str | None
    can_cancel: bool
    cancel_requested: bool
    recovery: Recovery | None
    question: Question | None = None
    """What a run waiting on a human asks (content: from an event the key may see)."""
    can_answer: bool = False
    """The run waits on a human: ``POST /v1/runs/{id}/input`` moves it on."""


class AgentStatus(BaseModel):
    """The conversation's current (or latest) run and its panel; both null for no run."""

    conversation_id: str
    run: Run | None
    panel: Panel | None


class Me(BaseModel):
    key_id: str | None
    """None in open mode, where no key is needed."""
    organization_id: str
    role: str
    max_visibility: str


class AuditReport(BaseModel):
    """The chain check; ``first_bad_event_id`` and ``reason`` are sent only when ``ok`` is false,
    ``signed_heads`` and ``signed_through`` only when signed heads were checked (a public key or
    a kept head was given, or the server signs heads)."""

    ok: bool
    events: int
    head_id: int
    head_hash: str
    first_bad_event_id: int | None = None
    reason: str | None = None
    signed_heads: int | None = None
    """Signed heads whose signature the walk verified."""
    signed_through: int | None = None
    """The highest event id a verified signed head covers."""
    kept_heads: int | None = None
    """Kept heads (``head``) the walk reached with their hash; sent when one was given."""


class ChainHeadAnswer(BaseModel):
    """The latest signed head (``GET /v1/audit/head``): what an auditor keeps outside the
    database. ``event_id`` is the ``chain_head`` event that carries it (``head_id`` + 1)."""

    event_id: int
    head_id: int
    head_hash: str
    signature: str
    key_id: str
    created_at: str
    chain_v2_from: int | None = None
    """The first event hashed with chain v2, covered by the signature (absent in older heads)."""


class ExportPage(BaseModel):
    """A page of the whole log for an organization's export (``GET /v1/audit/export``): its
    own events whole, every other one as ``{"id", "prev_hash", "hash", "content_hash",
    "redacted": true}`` (no ``content_hash`` for an event hashed with chain v1)."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None
    position: int
    head: int


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    head_id: int
    leader: bool


class NotReady(BaseModel):
    """503 from ``/readyz``: the kind of failure only (its text may name hosts: it is logged)."""

    status: str
    reason: str
