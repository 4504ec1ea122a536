"""The event types of the log and the pydantic models of their payloads.

A payload is validated and normalised (defaults filled in) before it is hashed and stored, so the
stored JSON is the same whatever shape of the same data the caller sent. Unknown event types are
refused unless they start with ``custom.``; a custom payload is any JSON object.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from .callback_url import check_callback_url
from .errors import InvalidEvent
from .records import Visibility

__all__ = [
    "CUSTOM_PREFIX",
    "DEFAULT_VISIBILITY",
    "INTEGRAL",
    "MAX_INTEGER",
    "PAYLOAD_MODELS",
    "SERVER_WRITTEN_TYPES",
    "STATUS_FOR_STOP_REASON",
    "USER_ONLY_TYPES",
    "CheckpointKind",
    "EventType",
    "RunStatus",
    "StopReason",
    "describe_validation_error",
    "normal_json",
    "normalise_payload",
    "validation_error_list",
]

CUSTOM_PREFIX = "custom."
MAX_INTEGER = 2**63 - 1
"""The largest integer a counter, id or cursor may hold: both backends store them as 64-bit."""
MAX_STEP_TOKENS = 2**32
"""Tokens one step may report: a run's totals (sums of steps) then stay far inside 64 bits."""


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    WAITING_ON_LANE = "waiting_on_lane"
    RUNNING = "running"
    WAITING_ON_TOOL = "waiting_on_tool"
    WAITING_ON_CHILD = "waiting_on_child"
    WAITING_ON_HUMAN = "waiting_on_human"
    RESUMING = "resuming"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class StopReason(enum.StrEnum):
    END_TURN = "end_turn"
    MAX_STEPS = "max_steps"
    TOOL_RULE = "tool_rule"
    REQUIRES_APPROVAL = "requires_approval"
    ERROR = "error"
    LLM_API_ERROR = "llm_api_error"
    INVALID_LLM_RESPONSE = "invalid_llm_response"
    INVALID_TOOL_CALL = "invalid_tool_call"
    NO_TOOL_CALL = "no_tool_call"
    MAX_TOKENS_EXCEEDED = "max_tokens_exceeded"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    QUEUE_TIMEOUT = "queue_timeout"


_S, _R = StopReason, RunStatus
STATUS_FOR_STOP_REASON: dict[StopReason, RunStatus] = {
    _S.END_TURN: _R.COMPLETED,
    _S.MAX_STEPS: _R.COMPLETED,
    _S.TOOL_RULE: _R.COMPLETED,
    _S.REQUIRES_APPROVAL: _R.COMPLETED,
    _S.ERROR: _R.FAILED,
    _S.LLM_API_ERROR: _R.FAILED,
    _S.INVALID_LLM_RESPONSE: _R.FAILED,
    _S.INVALID_TOOL_CALL: _R.FAILED,
    _S.NO_TOOL_CALL: _R.FAILED,
    _S.MAX_TOKENS_EXCEEDED: _R.FAILED,
    _S.QUEUE_TIMEOUT: _R.FAILED,
    _S.CANCELLED: _R.CANCELLED,
    _S.TIMED_OUT: _R.TIMED_OUT,
}
"""The terminal status each stop reason implies: the mapping of the systems runtrack replaces,
plus ours (docs/design.md, "Run lifecycle")."""


class CheckpointKind(enum.StrEnum):
    INPUT = "input"
    LLM_RESPONSE = "llm_response"
    TOOL_RESULT = "tool_result"
    JOURNAL_UPDATE = "journal_update"
    HUMAN_PAUSE = "human_pause"
    FINAL = "final"


class EventType(enum.StrEnum):
    RUN_CREATED = "run_created"
    RUN_STATUS_CHANGED = "run_status_changed"
    CANCEL_REQUESTED = "cancel_requested"
    TOOL_STARTED = "tool_started"
    TOOL_FINISHED = "tool_finished"
    CHECKPOINT_CREATED = "checkpoint_created"
    JOURNAL_UPDATED = "journal_updated"
    MESSAGE_CREATED = "message_created"
    STEP_COMPLETED = "step_completed"
    CHILD_RUN_STARTED = "child_run_started"
    CHILD_RUN_FINISHED = "child_run_finished"
    CALLBACK_ATTEMPTED = "callback_attempted"
    HUMAN_INPUT_REQUESTED = "human_input_requested"
    HUMAN_INPUT = "human_input"
    METADATA_UPDATED = "metadata_updated"
    CHAIN_HEAD = "chain_head"


SERVER_WRITTEN_TYPES: frozenset[str] = frozenset(
    {
        EventType.RUN_CREATED,
        EventType.CALLBACK_ATTEMPTED,
        EventType.HUMAN_INPUT,
        EventType.CHAIN_HEAD,
    }
)
"""Event types only the server writes (``POST /v1/runs``, the callback deliverer, ``POST
/v1/runs/{id}/input``, the head signer): appended through the API they would let a client fake
a run's start, a delivery's outcome, a person's answer or a signed head."""


def _integral(value: Any) -> Any:
    """JSON has one number type: ``3.0`` is the integer 3, as JSON Schema counts it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


INTEGRAL = BeforeValidator(_integral)
"""Put after an integer's constraints in ``Annotated`` (so that the schema shows them): strict
validation then also takes ``3.0``, as JSON Schema does."""


class _Payload(BaseModel):
    """Strict (``0`` is not ``false``, ``"5"`` not a number), but enums are read from strings."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class RunCreated(_Payload):
    agent_id: str = Field(min_length=1, max_length=200)
    lane_key: str | None = Field(default=None, max_length=400)
    metadata: dict[str, Any] = Field(default_factory=dict)
    callback_url: str | None = Field(default=None, max_length=2000)
    parent_run_id: str | None = None

    @field_validator("callback_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        return require_http_url(value)


def _implied_status(reason: str, status: str) -> JsonValue:
    return {
        "required": ["stop_reason"],
        "properties": {"stop_reason": {"const": reason}, "to": {"enum": [status, None]}},
    }


_STATUS_CHANGE_SHAPES: list[JsonValue] = [
    {"required": ["to"], "properties": {"to": {"type": "string"}, "stop_reason": {"type": "null"}}},
    *[
        _implied_status(reason.value, status.value)
        for reason, status in STATUS_FOR_STOP_REASON.items()
    ],
]
"""What the validator below checks, as JSON Schema: a target, or a stop reason and its status."""


class RunStatusChanged(_Payload):
    """A status change; ``to`` may be left out when ``stop_reason`` implies it."""

    model_config = ConfigDict(json_schema_extra={"anyOf": _STATUS_CHANGE_SHAPES})

    from_: RunStatus | None = Field(default=None, alias="from", strict=False)
    to: RunStatus | None = Field(default=None, strict=False)
    detail: str | None = Field(default=None, max_length=4000)
    stop_reason: StopReason | None = Field(default=None, strict=False)
    last_heartbeat_at: str | None = None
    """Set by the reconciler on a heartbeat timeout: the last sign of life it saw."""

    @model_validator(mode="after")
    def _target_follows_stop_reason(self) -> RunStatusChanged:
        if self.stop_reason is None:
            if self.to is None:
                raise ValueError("give 'to' (the new status) or a 'stop_reason'")
            return self
        implied = STATUS_FOR_STOP_REASON[self.stop_reason]
        if self.to is None:
            return self.model_copy(update={"to": implied})
        if self.to is not implied:
            raise ValueError(
                f"stop_reason {self.stop_reason.value} ends a run as {implied.value}, "
                f"not {self.to.value}"
            )
        return self


class CancelRequested(_Payload):
    reason: str | None = None
    requested_by: str | None = None


class ToolStarted(_Payload):
    tool_call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: Any = None


class ToolFinished(_Payload):
    tool_call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    status: Literal["success", "error"] = "success"
    result: Any = None
    error: str | None = None
    duration_ms: float | None = Field(default=None, ge=0)


class CheckpointCreated(_Payload):
    checkpoint_id: str = Field(min_length=1)
    kind: CheckpointKind = Field(strict=False)
    state: Any = None


class JournalUpdated(_Payload):
    objective: str | None = None
    current_state: str | None = None
    blockers: list[str] = Field(default_factory=list)
    next_action: str | None = None
    findings: list[str] = Field(default_factory=list)
    handoff_next_action: str | None = None


class MessageCreated(_Payload):
    role: Literal["user", "assistant", "system", "tool"]
    content: str


class StepCompleted(_Payload):
    model: str | None = None
    prompt_tokens: Annotated[int, Field(ge=0, le=MAX_STEP_TOKENS), INTEGRAL] = 0
    completion_tokens: Annotated[int, Field(ge=0, le=MAX_STEP_TOKENS), INTEGRAL] = 0
    duration_ms: float | None = Field(default=None, ge=0)
    ttft_ns: Annotated[int, Field(ge=0, le=MAX_INTEGER), INTEGRAL] | None = None


class ChildRunStarted(_Payload):
    child_run_id: str = Field(min_length=1)
    agent_id: str | None = None


class ChildRunFinished(_Payload):
    child_run_id: str = Field(min_length=1)
    status: RunStatus | None = Field(default=None, strict=False)
    stop_reason: str | None = None


class CallbackAttempted(_Payload):
    attempt: Annotated[int, Field(ge=1, le=MAX_INTEGER), INTEGRAL]
    status_code: Annotated[int, Field(ge=0, le=999), INTEGRAL] | None = None
    error: str | None = None
    delivery_id: str | None = None
    final: bool = False
    """The last attempt of this delivery: it succeeded, or the retry limit is reached."""


MAX_QUESTION_CHARS = 20_000
"""A question to a person: long enough for a diff or a plan to approve."""
IDENTIFIER = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
"""What an identifier may hold: anything but control characters (api/client/contract.py)."""


class HumanInputRequested(_Payload):
    """A question to a person; the worker appends it with the move to ``waiting_on_human``."""

    question_id: str = Field(min_length=1, max_length=200, pattern=IDENTIFIER)
    question: str = Field(max_length=MAX_QUESTION_CHARS)
    choices: list[Annotated[str, Field(max_length=MAX_QUESTION_CHARS)]] | None = None


class HumanInput(_Payload):
    """A person's answer (``POST /v1/runs/{id}/input``); ``answered_by`` is the key's id."""

    question_id: str | None = Field(default=None, max_length=200, pattern=IDENTIFIER)
    response: JsonValue
    answered_by: str | None = None


class MetadataUpdated(_Payload):
    """A JSON merge patch (RFC 7386) of the run's metadata: null deletes, objects merge."""

    patch: dict[str, JsonValue]


class ChainHead(_Payload):
    """A signed head of the chain (``eventstore/signing.py``): the leader signs the event just
    before this one, so ``head_id`` is this event's id - 1 and ``head_hash`` its ``prev_hash``."""

    head_id: Annotated[int, Field(ge=1, le=MAX_INTEGER), INTEGRAL]
    head_hash: str = Field(pattern="^[0-9a-f]{64}$")
    signature: str = Field(pattern="^[0-9a-f]{128}$")
    key_id: str = Field(pattern="^[0-9a-f]{16}$")
    chain_v2_from: Annotated[int, Field(ge=1, le=MAX_INTEGER), INTEGRAL] | None = None
    """The first event hashed with chain v2 (signed too); absent in heads signed before it."""


PAYLOAD_MODELS: dict[str, type[_Payload]] = {
    EventType.RUN_CREATED: RunCreated,
    EventType.RUN_STATUS_CHANGED: RunStatusChanged,
    EventType.CANCEL_REQUESTED: CancelRequested,
    EventType.TOOL_STARTED: ToolStarted,
    EventType.TOOL_FINISHED: ToolFinished,
    EventType.CHECKPOINT_CREATED: CheckpointCreated,
    EventType.JOURNAL_UPDATED: JournalUpdated,
    EventType.MESSAGE_CREATED: MessageCreated,
    EventType.STEP_COMPLETED: StepCompleted,
    EventType.CHILD_RUN_STARTED: ChildRunStarted,
    EventType.CHILD_RUN_FINISHED: ChildRunFinished,
    EventType.CALLBACK_ATTEMPTED: CallbackAttempted,
    EventType.HUMAN_INPUT_REQUESTED: HumanInputRequested,
    EventType.HUMAN_INPUT: HumanInput,
    EventType.METADATA_UPDATED: MetadataUpdated,
    EventType.CHAIN_HEAD: ChainHead,
}

_U, _O, _I = Visibility.USER, Visibility.OPERATOR, Visibility.INTERNAL
DEFAULT_VISIBILITY: dict[str, Visibility] = {
    EventType.RUN_CREATED: _U,
    EventType.RUN_STATUS_CHANGED: _U,
    EventType.CANCEL_REQUESTED: _U,
    EventType.MESSAGE_CREATED: _U,
    EventType.TOOL_STARTED: _O,
    EventType.TOOL_FINISHED: _O,
    EventType.JOURNAL_UPDATED: _O,
    EventType.STEP_COMPLETED: _O,
    EventType.CHILD_RUN_STARTED: _O,
    EventType.CHILD_RUN_FINISHED: _O,
    EventType.CALLBACK_ATTEMPTED: _O,
    EventType.CHECKPOINT_CREATED: _I,
    EventType.HUMAN_INPUT_REQUESTED: _U,
    EventType.HUMAN_INPUT: _U,
    EventType.METADATA_UPDATED: _U,
    EventType.CHAIN_HEAD: _U,
}
CUSTOM_DEFAULT_VISIBILITY = Visibility.OPERATOR
USER_ONLY_TYPES: frozenset[str] = frozenset({EventType.METADATA_UPDATED})
"""Event types only visibility ``user`` may carry: what they change (a run's metadata) is the
run's summary, which every role reads."""

MAX_EVENT_TYPE_LENGTH = 200
_MESSAGE_CREATED = EventType.MESSAGE_CREATED.value
_MESSAGE_ROLES = frozenset(get_args(MessageCreated.model_fields["role"].annotation))
_quote = json.encoder.encode_basestring
_CONTROL_CHARACTER = re.compile("[\\x00-\\x1f\\x7f-\\x9f]")


def require_http_url(value: str | None) -> str | None:
    """Callbacks go to valid absolute http(s) URLs only (see eventstore/callback_url.py)."""
    return None if value is None else check_callback_url(value)


def normalise_payload(event_type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``payload`` for ``event_type`` and return its normal form, or raise InvalidEvent."""
    model = PAYLOAD_MODELS.get(event_type)
    if model is not None:
        return _validate_model(model, event_type, payload)
    if _is_custom(event_type):
        return _validate_custom(event_type, payload)
    raise InvalidEvent(
        f"unknown event_type {event_type!r}: use one of the core types or a 'custom.' prefix",
        event_type=event_type,
    )


def normal_json(event_type: str, payload: object) -> str | None:
    """The canonical JSON of ``payload``'s normal form when it can be seen without pydantic
    (a ``message_created`` of two plain strings: the normal form is the payload itself), or
    None: then ``normalise_payload`` and ``canonical_json`` decide. Written with the reference
    encoder's own string quoting, so the text is the one they would give."""
    if event_type != _MESSAGE_CREATED or type(payload) is not dict or len(payload) != 2:
        return None
    role, content = payload.get("role"), payload.get("content")
    if type(role) is not str or role not in _MESSAGE_ROLES or type(content) is not str:
        return None
    return f'{{"content":{_quote(content)},"role":{_quote(role)}}}'


def default_visibility(event_type: str) -> Visibility:
    return DEFAULT_VISIBILITY.get(event_type, CUSTOM_DEFAULT_VISIBILITY)


def _is_custom(event_type: str) -> bool:
    return (
        event_type.startswith(CUSTOM_PREFIX)
        and len(event_type) > len(CUSTOM_PREFIX)
        and len(event_type) <= MAX_EVENT_TYPE_LENGTH
        and _CONTROL_CHARACTER.search(event_type) is None
    )


def _validate_model(model: type[_Payload], event_type: str, payload: Any) -> dict[str, Any]:
    try:  # the validator and serializer themselves: model_validate's wrapper costs as much
        instance = model.__pydantic_validator__.validate_python(payload)
    except ValidationError as exc:
        raise InvalidEvent(
            f"invalid payload for {event_type}: {describe_validation_error(exc)}",
            event_type=event_type,
            errors=validation_error_list(exc),
        ) from exc
    normal: dict[str, Any] = model.__pydantic_serializer__.to_python(
        instance, mode="json", by_alias=True
    )
    return normal


def _validate_custom(event_type: str, payload: Any) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise InvalidEvent(f"payload of {event_type} must be a JSON object", event_type=event_type)
    return dict(payload)


def describe_validation_error(exc: ValidationError, root: str = "payload") -> str:
    """The first problem, where it is, and how many more: a message a person can act on."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or root
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def validation_error_list(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
