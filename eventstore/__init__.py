"""The log: AgentEvent, the EventStore protocol, its backends, the live tail and the hash chain."""

from __future__ import annotations

from .appending import AppendRequest, Head, PreparedEvent, WriteContext, prepare_append
from .chain import canonical_json, event_hash
from .errors import (
    ConcurrencyConflict,
    IdempotencyMismatch,
    InvalidCursor,
    InvalidEvent,
    RefusedByProjection,
    StoreError,
    StoreUnavailable,
    UnknownRun,
)
from .factory import open_store
from .payloads import CheckpointKind, EventType, RunStatus
from .protocol import Dialect, EventStore, Projection, Transaction, VerifyReport
from .records import GENESIS_HASH, AgentEvent, EventFilter, EventPage, NewEvent, Visibility
from .sqlite import SQLiteEventStore

__all__ = [
    "GENESIS_HASH",
    "AgentEvent",
    "AppendRequest",
    "CheckpointKind",
    "ConcurrencyConflict",
    "Dialect",
    "EventFilter",
    "EventPage",
    "EventStore",
    "EventType",
    "Head",
    "IdempotencyMismatch",
    "InvalidCursor",
    "InvalidEvent",
    "NewEvent",
    "PreparedEvent",
    "Projection",
    "RefusedByProjection",
    "RunStatus",
    "SQLiteEventStore",
    "StoreError",
    "StoreUnavailable",
    "Transaction",
    "UnknownRun",
    "VerifyReport",
    "Visibility",
    "WriteContext",
    "canonical_json",
    "event_hash",
    "open_store",
    "prepare_append",
]
