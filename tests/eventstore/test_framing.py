"""SSE frames built by the database agree byte for byte with the ones built in Python."""

from __future__ import annotations

from typing import Any

import pytest

from eventstore import EventFilter, NewEvent, Visibility
from eventstore.framing import encode_event, id_block, read_frames

pytestmark = pytest.mark.anyio

AWKWARD = {
    "text": 'quote " backslash \\ slash / tab \t newline \n nul-ish \x01 bell \x07',
    "unicode": "héllo ✓ 中文 😀",
    "numbers": [0, -1, 1.5, 1e300, 12345678901234567890],
    "nested": {"z": None, "a": [True, False, {}], "": "empty key"},
}


async def test_database_frames_equal_python_frames(store: Any) -> None:
    await store.append(
        "org-ü", 'run-"quoted"\\', [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
    )
    appended = await store.append(
        "org-ü",
        'run-"quoted"\\',
        [
            NewEvent("custom.awkward", AWKWARD),
            NewEvent("custom.ünïcode-type", {"n": 1}, visibility="user"),
            NewEvent("message_created", {"role": "user", "content": "line one\nline two"}),
        ],
    )
    events = (await store.read(EventFilter(), after=0, limit=100)).events
    page = await read_frames(store, EventFilter(), after=0, limit=100)
    assert page.chunk.decode() == "".join(encode_event(e) for e in events)
    assert (page.count, page.position) == (4, appended[-1].id)
    assert page.last_status is None


async def test_frames_of_a_stream_pinned_to_one_run_equal_python_frames(store: Any) -> None:
    """Values the filter pins (organization, run, conversation) are quoted once, in Python."""
    for run, conversation in (('run-"quoted"\\', "conv-ü\\"), ("run-other", "conv-other")):
        await store.append(
            'org-ü "x"',
            run,
            [NewEvent("run_created", {"agent_id": "a"}), NewEvent("custom.awkward", AWKWARD)],
            conversation_id=conversation,
        )
    pinned = [
        EventFilter(organization_id='org-ü "x"'),
        EventFilter(organization_id='org-ü "x"', run_id='run-"quoted"\\'),
        EventFilter(organization_id='org-ü "x"', conversation_id="conv-ü\\"),
    ]
    for flt in pinned:
        events = (await store.read(flt, after=0, limit=100)).events
        page = await read_frames(store, flt, after=0, limit=100)
        assert events
        assert page.count == len(events)
        frames = page.chunk.decode().removesuffix(id_block(page.position))
        assert frames == "".join(encode_event(e) for e in events)


async def test_filtered_and_partial_pages_move_the_cursor_like_reads(store: Any) -> None:
    await store.append(
        "org", "run-1", [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
    )
    await store.append(
        "org",
        "run-1",
        [NewEvent("custom.tick", {"n": n}, visibility="internal") for n in range(3)],
    )
    user_only = EventFilter(visibility=Visibility.USER)
    hidden = await read_frames(store, user_only, after=1, limit=10)
    assert hidden.count == 0
    assert hidden.position == 4
    assert hidden.chunk.decode() == id_block(4)

    first_two = await read_frames(store, EventFilter(), after=0, limit=2)
    assert (first_two.count, first_two.position) == (2, 2)
    assert first_two.chunk.decode().count("\nevent: ") == 2
    assert not first_two.chunk.decode().endswith(id_block(2))


async def test_a_page_reports_its_last_status_change(store: Any) -> None:
    run = "run-status"
    await store.append(
        "org", run, [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
    )
    await store.append(
        "org",
        run,
        [
            NewEvent("run_status_changed", {"from": "queued", "to": "running"}),
            NewEvent("run_status_changed", {"from": "running", "to": "completed"}),
        ],
    )
    page = await read_frames(store, EventFilter(run_id=run), after=0, limit=10)
    assert page.last_status == "completed"


async def test_events_whose_names_need_no_escaping_are_framed_as_stored(store: Any) -> None:
    """The frame's fast path (names written between quotes as they are) is taken exactly for
    the events whose names JSON leaves alone, and both paths agree with Python in one page."""
    created = NewEvent("run_created", {"agent_id": "a"})
    await store.append("org", "run-plain", [created], conversation_id="c")
    await store.append(
        "org", "run-plain", [NewEvent('custom.say "hi"', {"n": 1}), NewEvent("custom.ok", {})]
    )
    await store.append("org", "run-\\", [created], conversation_id="c")
    await store.append("org-ü ✓", "run-ü", [created], conversation_id="c-😀")
    rows = await store.fetchall("SELECT plain_names FROM events ORDER BY id")
    assert [bool(flag) for (flag,) in rows] == [True, False, True, False, True]
    events = (await store.read(EventFilter(), after=0, limit=100)).events
    page = await read_frames(store, EventFilter(), after=0, limit=100)
    assert page.chunk.decode() == "".join(encode_event(e) for e in events)


async def test_events_stored_before_the_flag_existed_are_quoted(store_factory: Any) -> None:
    """A log from before migration 2: its events have no flag, so the database quotes their
    names (the slow path, same bytes); events appended after the migration take the fast one."""
    created = NewEvent("run_created", {"agent_id": "a"})
    async with store_factory() as store:
        await store.append("org", "run-old", [created], conversation_id="c")

        def back_to_version_1(context: Any) -> None:
            context.tx.execute("ALTER TABLE events DROP COLUMN plain_names")
            context.tx.execute("DELETE FROM schema_migrations WHERE version = 2")

        await store.transact(back_to_version_1)
        assert not (await store.fetchall("SELECT version FROM schema_migrations WHERE version = 2"))
    async with store_factory() as store:
        await store.append("org", "run-new", [created], conversation_id="c")
        rows = await store.fetchall("SELECT plain_names FROM events ORDER BY id")
        assert [bool(flag) for (flag,) in rows] == [False, True]
        events = (await store.read(EventFilter(), after=0, limit=100)).events
        page = await read_frames(store, EventFilter(), after=0, limit=100)
        assert page.chunk.decode() == "".join(encode_event(e) for e in events)
