"""SSE frames of events: built in Python for live pages, and by the database for replays.

A frame is ``id: <id>`` / ``event: <type>`` / ``data: <the event's public JSON>`` and a blank
line. Live events get their frame once, in Python, shared by every stream that sends them. A
replay from the database would otherwise build a record and a frame per event in Python (most
of a catch-up's cost); instead the database builds each frame (one printf) and joins a page of
them into one bytes value. Both builders must agree byte for byte (a test holds them equal).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from .dialect import Dialect
from .records import AgentEvent, EventFilter, quote_json
from .store import STATUS_CHANGE, EventStore, filter_sql, status_target_sql

__all__ = [
    "FramePage",
    "encode_event",
    "id_block",
    "page_end",
    "read_export_lines",
    "read_frames",
]


def encode_event(event: AgentEvent) -> str:
    """The event's frame, built once per event and kept on the (immutable) event."""
    frame: str | None = event.__dict__.get("_frame")
    if frame is None:
        frame = f"id: {event.id}\nevent: {event.event_type}\ndata: {event.to_json()}\n\n"
        event.__dict__["_frame"] = frame
    return frame


def id_block(position: int) -> str:
    """Moves a client's ``Last-Event-ID`` past events it was not allowed to see."""
    return f"id: {position}\n\n"


@dataclass(frozen=True)
class FramePage:
    """Frames of the events after a cursor, ready to write, and what a stream needs to know."""

    chunk: bytes
    position: int
    """How far the scan reached (as ``EventPage.position``); the chunk ends with an id-only
    block when that is past its last frame."""
    count: int
    last_status: str | None
    """The target of the page's last status change, if it has one."""


_FRAME_TEMPLATE = (
    "id: {n}\nevent: {s}\ndata: "
    '{{"id":{n},"event_type":{event_type},"run_id":{run_id},'
    '"conversation_id":{conversation_id},"organization_id":{organization_id},'
    '"sequence":{n},"visibility":"{s}","payload":{s},"created_at":"{s}","prev_hash":"{s}",'
    '"hash":"{s}"}}\n\n'
)
"""``encode_event``'s frame as a printf template. Values we write ourselves (visibility label,
timestamp, hashes) need no JSON escaping; the names a client chose get a slot each."""

_LINE_TEMPLATE = (
    _FRAME_TEMPLATE.removeprefix("id: {n}\nevent: {s}\ndata: ").removesuffix("\n\n") + "\n"
)
"""One export line (``AgentEvent.to_json`` and a newline): the frame's ``data`` alone."""

_NAMES = ("event_type", "run_id", "conversation_id", "organization_id")
"""The frame's values a client chose, in template order."""


def _frame_sql(dialect: Dialect, fixed: Collection[str] = ()) -> str:
    """One frame per row, as ``encode_event`` writes it, in one printf/format call.

    An event whose names need no escaping (``plain_names``, stored at append: nearly all) has
    them written between quotes as they are; the others have the database quote them, a large
    part of the framing's cost (docs/benchmarks.md). Columns in ``fixed`` hold one value on
    every row the filter lets through (the stream's organization, run or conversation): their
    JSON comes in as a parameter, quoted once in Python, in both branches.
    """
    plain = _printf(dialect, fixed, quote=None)
    quoted = _printf(dialect, fixed, dialect.json_quote)
    return f"CASE WHEN plain_names THEN {plain} ELSE {quoted} END"


def _printf(
    dialect: Dialect,
    fixed: Collection[str],
    quote: Callable[[str], str] | None,
    template: str = _FRAME_TEMPLATE,
) -> str:
    """The frame's printf/format call (or an export line's, with ``_LINE_TEMPLATE``).
    ``quote`` makes the SQL that quotes an unpinned name from its column; with None, the
    names are written as stored, between the template's quotes."""
    number, text = dialect.integer_slot, "%s"
    as_stored = f'"{text}"' if quote is None else text
    slots = {c: text if c in fixed else as_stored for c in _NAMES}
    filled = template.format(n=number, s=text, **slots)
    unpinned = quote or (lambda column: column)
    names = ["CAST(? AS TEXT)" if c in fixed else unpinned(c) for c in _NAMES]
    head = ["id", "event_type"] if template is _FRAME_TEMPLATE else []
    arguments = [*head, "id", *names, "sequence", "visibility", "payload"]
    arguments += ["created_at", "prev_hash", "hash"]
    return dialect.format_call(filled, arguments)


def _line_sql(dialect: Dialect) -> str:
    plain = _printf(dialect, (), None, _LINE_TEMPLATE)
    quoted = _printf(dialect, (), dialect.json_quote, _LINE_TEMPLATE)
    return f"CASE WHEN plain_names THEN {plain} ELSE {quoted} END"


async def read_export_lines(store: EventStore, after: int, upto: int) -> tuple[bytes, int, int]:
    """Events ``(after, upto]`` as export lines joined into one bytes value (built by the
    database, as replay frames are: the archive writes a segment of them without building an
    event in Python), with how many there are and the last id."""
    lines = store.dialect.concat_bytes("f", order_by="id")
    rows = await store.fetchall(
        f"SELECT {lines}, count(*), max(id) FROM (SELECT id, {_line_sql(store.dialect)} AS f "
        "FROM events WHERE id > ? AND id <= ? ORDER BY id) AS batch",
        (after, upto),
    )
    joined, count, last = rows[0]
    return (bytes(joined) if count else b""), int(count), int(last or after)


def _fixed_values(flt: EventFilter) -> dict[str, str]:
    """The quoted JSON of each column the filter pins to one value, in template order (the
    order of their parameters)."""
    pinned = {
        "organization_id": flt.organization_id,
        "run_id": flt.run_id,
        "conversation_id": flt.conversation_id,
    }
    return {c: quote_json(v) for c in _NAMES if (v := pinned.get(c)) is not None}


def _status_key_sql(dialect: Dialect) -> str:
    """For a status change, ``<its id in 20 digits><its target status>``; NULL otherwise."""
    key = f"{dialect.zero_padded('id', 20)} || ({status_target_sql(dialect)})"
    return f"CASE WHEN event_type = '{STATUS_CHANGE}' THEN {key} END"


def _page_sql(dialect: Dialect, where: str, fixed: Collection[str] = ()) -> str:
    """One row per page: its frames joined, last id, count, and its last status change.

    Joining in the database hands Python one string per page instead of a row per event, so the
    reader thread holds the GIL once per page (a row per event would make it trade the GIL with
    the event loop on every row), and pages framed on several readers build in parallel (with
    SQLite's memory statistics off: see ``sqlite_library``). The subquery is in id order, which
    the join follows (``Dialect.concat_bytes``). The last status is the highest status key
    (``_status_key_sql``), with the id cut off again. The frames come back as bytes
    (UTF-8, as stored), ready to send, with no decoding to ``str`` and back.
    """
    frames = dialect.concat_bytes("f", order_by="id")
    return (
        f"SELECT {frames}, max(id), count(*), substr(max(s), 21) FROM ("
        f"SELECT id, {_frame_sql(dialect, fixed)} AS f, {_status_key_sql(dialect)} AS s "
        "FROM events "
        f"WHERE id > ? AND id <= ?{where} ORDER BY id LIMIT ?) AS page"
    )


async def read_frames(
    store: EventStore, flt: EventFilter, *, after: int, limit: int, upto: int | None = None
) -> FramePage:
    """The frames of up to ``limit`` events in ``(after, upto]`` that ``flt`` matches, in id
    order; ``upto`` is the head of the log unless given (a committed position, as ``page_end``).

    Positions follow ``EventStore.read``: a full page ends at its last event, a short one at
    ``upto`` (the scan reached it).
    """
    where, params = filter_sql(flt)
    end = await store.head() if upto is None else upto
    fixed = _fixed_values(flt)
    sql = _page_sql(store.dialect, where, fixed)
    pinned = (*fixed.values(), *fixed.values())  # once in each branch of the frame's CASE
    rows = await store.fetchall(sql, (*pinned, after, end, *params, limit))
    joined, last, count, last_status = rows[0]
    count = int(count)
    position = int(last) if count == limit else max(end, after)
    chunk = bytes(joined) if count else b""
    if not count or int(last) < position:
        chunk += id_block(position).encode()
    status = None if last_status is None else str(last_status)
    return FramePage(chunk, position, count, status)


async def page_end(store: EventStore, flt: EventFilter, *, after: int, upto: int, size: int) -> int:
    """Where the page of ``size`` events after ``after`` that ``flt`` matches ends: its last
    event, or ``upto`` when fewer events match up to there.

    It steps over ids only (the table or an index), far cheaper than framing the page, so the
    next pages' bounds are known before the page before them is read, and they can be framed
    at once.
    """
    where, params = filter_sql(flt)
    rows = await store.fetchall(
        f"SELECT id FROM events WHERE id > ? AND id <= ?{where} ORDER BY id LIMIT 1 OFFSET ?",
        (after, upto, *params, size - 1),
    )
    return int(rows[0][0]) if rows else upto
