"""The Python client of runtrack's HTTP API and its worker SDK: it imports nothing of the server
or the store."""

from api.client.async_client import CursorExpiredError, RuntrackClient, RuntrackError
from api.client.models import Run, StoredEvent
from api.client.run_context import RunContext
from api.client.sync_client import SyncRuntrackClient
from api.client.sync_worker import SyncRunContext, SyncWorker
from api.client.worker import Worker
from api.client.worker_errors import (
    HumanInputPending,
    RunCancelled,
    RunLost,
    ToolCallFailed,
    ToolCallUnfinished,
)

__all__ = [
    "CursorExpiredError",
    "HumanInputPending",
    "Run",
    "RunCancelled",
    "RunContext",
    "RunLost",
    "RuntrackClient",
    "RuntrackError",
    "StoredEvent",
    "SyncRunContext",
    "SyncRuntrackClient",
    "SyncWorker",
    "ToolCallFailed",
    "ToolCallUnfinished",
    "Worker",
]
