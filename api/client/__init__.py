"""The Python client of runtrack's HTTP API: it imports nothing of the server or the store."""

from api.client.async_client import RuntrackClient, RuntrackError
from api.client.models import Run, StoredEvent
from api.client.sync_client import SyncRuntrackClient

__all__ = ["Run", "RuntrackClient", "RuntrackError", "StoredEvent", "SyncRuntrackClient"]
