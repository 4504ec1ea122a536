"""The log: AgentEvent, the EventStore, its backends, the live tail and the hash chain.

Code outside ``eventstore`` imports from here only; the modules behind it are free to move.
"""

from __future__ import annotations

from .appending import (
    CONTROL_CHARACTER,
    EVENT_COLUMNS,
    INSERT_EVENT,
    AppendRequest,
    Head,
    PlainAppend,
    PreparedEvent,
    WriteContext,
    event_columns,
    format_timestamp,
    prepare_append,
)
from .archive import Anchor
from .callback_url import check_callback_url
from .chain import CHAIN_V1, CHAIN_V2, canonical_json, event_content_hash, event_hash, link_hash
from .dialect import Dialect
from .errors import (
    ArchiveRefused,
    ConcurrencyConflict,
    CursorExpired,
    IdempotencyMismatch,
    InvalidCursor,
    InvalidEvent,
    RefusedByProjection,
    RunArchived,
    StoreError,
    StoreUnavailable,
    UnknownRun,
)
from .factory import open_store
from .framing import FramePage, encode_event, id_block, page_end, read_frames
from .heads import SYSTEM_RUN, AppendSignedHead, HeadChecks
from .leadership import Leadership
from .offline import OfflineReport, verify_sources
from .offline_sources import Broken, open_sources
from .payloads import (
    MAX_INTEGER,
    PAYLOAD_MODELS,
    SERVER_WRITTEN_TYPES,
    STATUS_FOR_STOP_REASON,
    USER_ONLY_TYPES,
    CheckpointKind,
    EventType,
    RunStatus,
    StopReason,
    describe_validation_error,
    normalise_payload,
    require_http_url,
    validation_error_list,
)
from .projection_schemas import record_fingerprint, schema_fingerprint
from .protocol import Projection, Row, Transaction, VerifyReport
from .records import (
    GENESIS_HASH,
    AgentEvent,
    EventFilter,
    EventPage,
    NewEvent,
    Visibility,
    refilled_events,
)
from .scratch_schema import (
    ScratchSchema,
    create_scratch_schema,
    drop_scratch_schema,
    scratch_schema,
)
from .segments import ArchiveReader, Manifest, SegmentError, list_manifests, read_segment
from .signing import (
    HeadSigner,
    PublicKeys,
    SignedHead,
    generate_key_file,
    key_id_of,
    load_public_key,
    public_hex,
)
from .sqlite import WAL_AUTOCHECKPOINT_PAGES, WRITER_CACHE_KIB, SQLiteEventStore
from .sqlite_library import disable_memory_statistics
from .store import ARCHIVE_BATCH, PARALLEL_READS, EventStore
from .system import SYSTEM_ORGANIZATION, is_reserved_organization
from .tail import Broadcaster
from .tasks import cancel_and_wait, stop_requested

__all__ = [
    "ARCHIVE_BATCH",
    "CHAIN_V1",
    "CHAIN_V2",
    "CONTROL_CHARACTER",
    "EVENT_COLUMNS",
    "GENESIS_HASH",
    "INSERT_EVENT",
    "MAX_INTEGER",
    "PARALLEL_READS",
    "PAYLOAD_MODELS",
    "SERVER_WRITTEN_TYPES",
    "STATUS_FOR_STOP_REASON",
    "SYSTEM_ORGANIZATION",
    "SYSTEM_RUN",
    "USER_ONLY_TYPES",
    "WAL_AUTOCHECKPOINT_PAGES",
    "WRITER_CACHE_KIB",
    "AgentEvent",
    "Anchor",
    "AppendRequest",
    "AppendSignedHead",
    "ArchiveReader",
    "ArchiveRefused",
    "Broadcaster",
    "Broken",
    "CheckpointKind",
    "ConcurrencyConflict",
    "CursorExpired",
    "Dialect",
    "EventFilter",
    "EventPage",
    "EventStore",
    "EventType",
    "FramePage",
    "Head",
    "HeadChecks",
    "HeadSigner",
    "IdempotencyMismatch",
    "InvalidCursor",
    "InvalidEvent",
    "Leadership",
    "Manifest",
    "NewEvent",
    "OfflineReport",
    "PlainAppend",
    "PreparedEvent",
    "Projection",
    "PublicKeys",
    "RefusedByProjection",
    "Row",
    "RunArchived",
    "RunStatus",
    "SQLiteEventStore",
    "ScratchSchema",
    "SegmentError",
    "SignedHead",
    "StopReason",
    "StoreError",
    "StoreUnavailable",
    "Transaction",
    "UnknownRun",
    "VerifyReport",
    "Visibility",
    "WriteContext",
    "cancel_and_wait",
    "canonical_json",
    "check_callback_url",
    "create_scratch_schema",
    "describe_validation_error",
    "disable_memory_statistics",
    "drop_scratch_schema",
    "encode_event",
    "event_columns",
    "event_content_hash",
    "event_hash",
    "format_timestamp",
    "generate_key_file",
    "id_block",
    "is_reserved_organization",
    "key_id_of",
    "link_hash",
    "list_manifests",
    "load_public_key",
    "normalise_payload",
    "open_sources",
    "open_store",
    "page_end",
    "prepare_append",
    "public_hex",
    "read_frames",
    "read_segment",
    "record_fingerprint",
    "refilled_events",
    "require_http_url",
    "schema_fingerprint",
    "scratch_schema",
    "stop_requested",
    "validation_error_list",
    "verify_sources",
]
