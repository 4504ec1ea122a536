"""The contract every EventStore backend must keep; each test runs once per backend."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections.abc import Sequence

import pytest

from eventstore import (
    AgentEvent,
    ConcurrencyConflict,
    Dialect,
    EventFilter,
    EventStore,
    IdempotencyMismatch,
    InvalidCursor,
    InvalidEvent,
    NewEvent,
    Projection,
    RefusedByProjection,
    StoreUnavailable,
    Transaction,
    UnknownRun,
    Visibility,
    event_hash,
)
from tests.conftest import StoreFactory

from .helpers import ORG, all_events, collect, created, custom, message, new_run
from .raw_database import RawDatabase, make_log

pytestmark = pytest.mark.anyio


async def test_append_assigns_dense_ids_and_per_run_sequences(store: EventStore) -> None:
    await new_run(store, "run-a")
    await new_run(store, "run-b")
    await store.append(ORG, "run-a", [message("1"), message("2")])
    await store.append(ORG, "run-b", [message("3")])

    events = await all_events(store)
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert [(e.run_id, e.sequence) for e in events] == [
        ("run-a", 1),
        ("run-b", 1),
        ("run-a", 2),
        ("run-a", 3),
        ("run-b", 2),
    ]


async def test_concurrent_appenders_keep_sequences_gapless_and_unique(
    store: EventStore,
) -> None:
    runs = [f"run-{i}" for i in range(8)]
    for run in runs:
        await new_run(store, run)

    async def appender(run: str) -> None:
        for n in range(25):
            await store.append(ORG, run, [custom(n)])

    await asyncio.gather(*(appender(run) for run in runs for _ in range(4)))

    events = await all_events(store)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    for run in runs:
        sequences = [e.sequence for e in events if e.run_id == run]
        assert sequences == list(range(1, 102))


async def test_same_expected_sequence_lets_exactly_one_appender_win(store: EventStore) -> None:
    await new_run(store, "run-a")
    results = await asyncio.gather(
        *(store.append(ORG, "run-a", [custom(i)], expected_sequence=1) for i in range(20)),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, list)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(winners) == 1
    assert len(conflicts) == 19
    assert all(c.details["current_sequence"] == 2 for c in conflicts)
    assert len(await store.read_run(ORG, "run-a")) == 2


async def test_stale_expected_sequence_writes_nothing(store: EventStore) -> None:
    await new_run(store, "run-a")
    await store.append(ORG, "run-a", [message()])
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append(ORG, "run-a", [message(), message()], expected_sequence=1)
    assert caught.value.details == {
        "run_id": "run-a",
        "expected_sequence": 1,
        "current_sequence": 2,
    }
    assert await store.head() == 2


async def test_idempotent_retry_returns_the_original_events(store: EventStore) -> None:
    await new_run(store, "run-a")
    first = await store.append(ORG, "run-a", [message("once")], idempotency_key="k-1")
    await store.append(ORG, "run-a", [message("later")])
    retry = await store.append(ORG, "run-a", [message("once")], idempotency_key="k-1")

    assert retry == first
    contents = [e.payload["content"] for e in (await store.read_run(ORG, "run-a"))[1:]]
    assert contents == ["once", "later"]


async def test_concurrent_retries_with_one_key_write_once(store: EventStore) -> None:
    await new_run(store, "run-a")
    results = await asyncio.gather(
        *(store.append(ORG, "run-a", [message("x")], idempotency_key="k") for _ in range(10))
    )
    assert all(r == results[0] for r in results)
    assert len(await store.read_run(ORG, "run-a")) == 2


async def test_idempotency_key_with_different_content_is_refused(store: EventStore) -> None:
    await new_run(store, "run-a")
    await new_run(store, "run-b")
    await store.append(ORG, "run-a", [message("x")], idempotency_key="k")
    with pytest.raises(IdempotencyMismatch):
        await store.append(ORG, "run-a", [message("y")], idempotency_key="k")
    with pytest.raises(IdempotencyMismatch):
        await store.append(ORG, "run-b", [message("x")], idempotency_key="k")
    assert await store.head() == 3


async def test_invalid_event_mid_batch_writes_nothing(store: EventStore) -> None:
    await new_run(store, "run-a")
    bad = NewEvent("message_created", {"role": "robot", "content": "x"})
    with pytest.raises(InvalidEvent, match="role"):
        await store.append(ORG, "run-a", [message("1"), message("2"), bad, message("4")])
    assert await store.head() == 1


class RefuseMarked(Projection):
    """A projection that refuses any append containing a payload marked ``refuse``."""

    name = "refuse-marked"

    def schema(self, dialect: Dialect) -> Sequence[str]:
        return ["CREATE TABLE IF NOT EXISTS seen (event_id INTEGER PRIMARY KEY)"]

    def apply(self, tx: Transaction, events: Sequence[AgentEvent]) -> None:
        for event in events:
            tx.execute("INSERT INTO seen (event_id) VALUES (?)", (event.id,))
            if event.payload.get("refuse"):
                raise RefusedByProjection("refused on purpose", code="refused_for_test")


async def test_failure_mid_batch_fails_that_append_alone(store_factory: StoreFactory) -> None:
    async with store_factory(projections=[RefuseMarked()]) as store:
        await new_run(store, "run-a")
        await new_run(store, "run-b")
        good_before = store.append(ORG, "run-a", [custom(1)])
        doomed = store.append(ORG, "run-b", [custom(2), custom(3, refuse=True), custom(4)])
        good_after = store.append(ORG, "run-a", [custom(5)])
        results = await asyncio.gather(good_before, doomed, good_after, return_exceptions=True)

        assert isinstance(results[1], RefusedByProjection)
        assert results[1].code == "refused_for_test"
        assert [e.sequence for e in results[0]] == [2]  # type: ignore[union-attr]
        assert [e.sequence for e in results[2]] == [3]  # type: ignore[union-attr]
        events = await all_events(store)
        assert [e.id for e in events] == [1, 2, 3, 4]
        assert [e.payload.get("n") for e in events[2:]] == [1, 5]
        seen = await store.fetchall("SELECT event_id FROM seen ORDER BY event_id")
        assert [row[0] for row in seen] == [
            1,
            2,
            3,
            4,
        ]  # the refused append's rows were rolled back


async def test_unknown_and_foreign_runs_are_unknown(store: EventStore) -> None:
    await new_run(store, "run-a", org="org-1")
    with pytest.raises(UnknownRun):
        await store.append("org-2", "run-a", [message()])
    with pytest.raises(UnknownRun):
        await store.append("org-1", "run-missing", [message()])
    assert await store.read_run("org-2", "run-a") == []


async def test_run_creation_rules(store: EventStore) -> None:
    with pytest.raises(InvalidEvent, match="conversation_id"):
        await store.append(ORG, "run-a", [NewEvent("run_created", {"agent_id": "a"})])
    await new_run(store, "run-a")
    with pytest.raises(ConcurrencyConflict, match="already exists"):
        await new_run(store, "run-a")
    with pytest.raises(InvalidEvent, match="first event"):
        await store.append(ORG, "run-a", [message(), NewEvent("run_created", {"agent_id": "a"})])


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        (NewEvent("no_such_type", {}), "unknown event_type"),
        (NewEvent("custom.", {}), "unknown event_type"),
        (NewEvent("message_created", {"role": "user"}), "content"),
        (NewEvent("message_created", {"role": "user", "content": "x", "extra": 1}), "extra"),
        (NewEvent("custom.x", {"v": float("nan")}), "not plain JSON"),
        (NewEvent("custom.x", {"v": {1, 2}}), "not plain JSON"),
        (
            NewEvent("message_created", {"role": "user", "content": "x"}, visibility="secret"),
            "visibility",
        ),
    ],
)
async def test_bad_events_are_refused_with_a_reason(
    store: EventStore, event: NewEvent, complaint: str
) -> None:
    await new_run(store, "run-a")
    with pytest.raises(InvalidEvent, match=complaint):
        await store.append(ORG, "run-a", [event])
    assert await store.head() == 1


async def test_default_visibility_and_filtering(store: EventStore) -> None:
    await new_run(store, "run-a")
    await store.append(
        ORG,
        "run-a",
        [
            NewEvent("tool_started", {"tool_call_id": "t1", "name": "search"}),
            NewEvent("checkpoint_created", {"checkpoint_id": "c1", "kind": "input"}),
            message(),
        ],
    )
    levels = {e.event_type: e.visibility for e in await all_events(store)}
    assert levels == {
        "run_created": "user",
        "tool_started": "operator",
        "checkpoint_created": "internal",
        "message_created": "user",
    }
    user_page = await store.read(EventFilter(ORG, visibility=Visibility.USER))
    assert [e.event_type for e in user_page.events] == ["run_created", "message_created"]
    assert user_page.position == 4  # scanned past what it may not see
    operator = await store.read_run(
        ORG, "run-a", filter=EventFilter(visibility=Visibility.OPERATOR)
    )
    assert "checkpoint_created" not in [e.event_type for e in operator]


async def test_reads_by_conversation_and_by_run_sequence(store: EventStore) -> None:
    await new_run(store, "run-a", conversation_id="conv-1")
    await new_run(store, "run-b", conversation_id="conv-2")
    await store.append(ORG, "run-a", [message("a2"), message("a3")])
    await store.append(ORG, "run-b", [message("b2")])

    conv = await store.read(EventFilter(ORG, conversation_id="conv-2"))
    assert [(e.run_id, e.sequence) for e in conv.events] == [("run-b", 1), ("run-b", 2)]
    tail = await store.read_run(ORG, "run-a", after_sequence=1, limit=1)
    assert [e.payload["content"] for e in tail] == ["a2"]


async def test_negative_cursor_is_refused(store: EventStore) -> None:
    with pytest.raises(InvalidCursor):
        await store.read(EventFilter(), after=-1)


async def test_ids_are_never_reused_after_refusals_and_reopen(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        await new_run(store, "run-a")
        with pytest.raises(ConcurrencyConflict):
            await store.append(ORG, "run-a", [message()], expected_sequence=7)
        await store.append(ORG, "run-a", [message()])
    async with store_factory() as store:
        await store.append(ORG, "run-a", [message()])
        assert [e.id for e in await all_events(store)] == [1, 2, 3]


async def test_hash_chain_links_every_event(store: EventStore) -> None:
    await new_run(store, "run-a")
    await store.append(ORG, "run-a", [message(), message()])
    events = await all_events(store)
    assert events[0].prev_hash == "0" * 64
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    report = await store.verify()
    assert report.ok
    assert (report.events, report.head_id, report.head_hash) == (3, 3, events[-1].hash)
    assert (await store.verify(run_id="run-a")).ok


async def test_subscribe_replays_then_follows_live(store: EventStore) -> None:
    await new_run(store, "run-a")
    stream = store.subscribe(EventFilter(ORG), after=0)
    first = await anext(stream)
    assert [e.id for e in first.events] == [1]
    pending = asyncio.ensure_future(anext(stream))
    await store.append(ORG, "run-a", [message()])
    live = await pending
    assert [e.id for e in live.events] == [2]
    await stream.aclose()
    assert store.subscriber_count == 0


async def test_subscribers_starting_during_concurrent_appends_see_each_event_once(
    store: EventStore,
) -> None:
    """64 appenders write while 8 subscribers join at random cursors: exactly-once, in order."""
    runs = [f"run-{i}" for i in range(16)]
    for run in runs:
        await new_run(store, run)
    per_appender, appenders = 10, 64
    total = len(runs) + per_appender * appenders
    rng = random.Random(7)

    async def appender(k: int) -> None:
        for n in range(per_appender):
            await store.append(ORG, runs[k % len(runs)], [custom(n)])
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    async def late_subscriber() -> tuple[int, list[AgentEvent]]:
        await asyncio.sleep(rng.random() * 0.05)
        cursor = rng.randint(0, await store.head())
        return cursor, await collect(store, EventFilter(ORG), cursor, total)

    results = await asyncio.gather(
        *(late_subscriber() for _ in range(8)), *(appender(k) for k in range(appenders))
    )
    for cursor, received in results[:8]:  # type: ignore[misc]
        assert [e.id for e in received] == list(range(cursor + 1, total + 1))


async def test_filtered_subscriber_gets_only_its_run(store: EventStore) -> None:
    await new_run(store, "run-a")
    await new_run(store, "run-b")
    collector = asyncio.ensure_future(
        collect(store, EventFilter(ORG, run_id="run-b", visibility=Visibility.USER), 0, 17)
    )
    for n in range(5):
        await store.append(ORG, "run-a", [custom(n)])
        await store.append(ORG, "run-b", [custom(n), message(str(n))])
    received = await collector
    assert [(e.run_id, e.event_type) for e in received] == [("run-b", "run_created")] + [
        ("run-b", "message_created")
    ] * 5


async def test_subscriber_behind_a_small_buffer_catches_up_from_the_database(
    store_factory: StoreFactory,
) -> None:
    async with store_factory(tail_capacity=8, page_size=5) as store:
        await new_run(store, "run-a")
        for n in range(40):
            await store.append(ORG, "run-a", [custom(n)])
        received = await collect(store, EventFilter(ORG), 3, 41)
        assert [e.id for e in received] == list(range(4, 42))


async def test_another_store_on_the_same_database_is_seen_live(store_factory: StoreFactory) -> None:
    async with store_factory(poll_interval=0.02) as reader, store_factory() as writer:
        await new_run(writer, "run-a")
        collector = asyncio.ensure_future(collect(reader, EventFilter(ORG), 0, 6))
        for n in range(5):
            await writer.append(ORG, "run-a", [custom(n)])
        assert [e.id for e in await collector] == [1, 2, 3, 4, 5, 6]


async def test_two_stores_appending_to_one_run_take_turns_in_sequence(
    store_factory: StoreFactory,
) -> None:
    """Each writer keeps its last group's run heads for the next (``RunHeads``): an append by
    the other store in between must be seen, or the next sequence would be taken twice."""
    async with store_factory() as first, store_factory() as second:
        await new_run(first, "run-a")
        for n in range(3):
            await first.append(ORG, "run-a", [custom(n)])
            await second.append(ORG, "run-a", [custom(n)])
        await first.append(ORG, "run-a", [custom(9)], expected_sequence=7)
        events = await all_events(first)
        assert (await first.verify()).ok
    assert [e.sequence for e in events] == list(range(1, 9))


async def test_closing_the_store_ends_subscriptions(store_factory: StoreFactory) -> None:
    store = await store_factory().open()
    stream = store.subscribe(EventFilter(), after=0)
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    await store.aclose()
    with pytest.raises(StopAsyncIteration):
        await waiting


async def test_an_idle_subscription_ticks_without_moving(store: EventStore) -> None:
    await new_run(store, "run-a")
    stream = store.subscribe(EventFilter(ORG), after=1, idle_timeout=0.01)
    tick = await anext(stream)
    assert (tick.events, tick.position) == ([], 1)
    pending = asyncio.ensure_future(anext(stream))
    await store.append(ORG, "run-a", [message()])
    page = await pending
    while not page.events:  # ticks may come first on a busy machine
        page = await anext(stream)
    assert [e.id for e in page.events] == [2]
    await stream.aclose()


@pytest.mark.parametrize("attempt", range(3))
async def test_acknowledged_appends_survive_sigkill(
    store_factory: StoreFactory, database_url: str, attempt: int
) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.eventstore.appender_process",
        database_url,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    acknowledged: list[int] = []
    while len(acknowledged) < 200 + 150 * attempt:
        acknowledged.append(int(await child.stdout.readline()))
    child.send_signal(signal.SIGKILL)
    await child.wait()

    async with store_factory() as store:
        stored = {e.id for e in await all_events(store)}
        report = await store.verify()
        await store.append("org", "run-0", [message("after the crash")])
        assert (await store.verify()).ok
    assert set(acknowledged) <= stored
    assert report.ok, report


async def test_verify_while_appends_continue_is_not_fooled(store: EventStore) -> None:
    """Regression: verify read the head after walking, so a concurrent append looked missing."""
    await new_run(store, "run-a")
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            await store.append(ORG, "run-a", [custom(1)])

    task = asyncio.ensure_future(writer())
    try:
        for _ in range(20):
            assert (await store.verify()).ok
    finally:
        stop.set()
        await task


# -- the log is append-only, in the database and against tampering --------------------------


@pytest.fixture
def raw(backend: str, database_url: str) -> RawDatabase:
    return RawDatabase(backend, database_url)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}' WHERE id = 1",
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events WHERE id = 1",
        "DELETE FROM events",
        "truncate",
    ],
)
async def test_the_database_refuses_to_change_the_log(
    store_factory: StoreFactory, raw: RawDatabase, statement: str
) -> None:
    await make_log(store_factory)
    with pytest.raises(raw.refusal, match="append-only"):
        raw.execute(raw.truncate if statement == "truncate" else statement)


@pytest.mark.parametrize(
    ("statements", "bad_id", "reason"),
    [
        (
            ['UPDATE events SET payload = \'{"content":"evil","role":"user"}\' WHERE id = 4'],
            4,
            "modified",
        ),
        (["UPDATE events SET visibility = 'internal' WHERE id = 3"], 3, "modified"),
        (["DELETE FROM events WHERE id = 2"], 2, "missing"),
        (["DELETE FROM events WHERE id = 3"], 3, "missing"),
        (["DELETE FROM events WHERE id = 6"], 6, "missing"),
        (
            [
                "UPDATE events SET id = -1 WHERE id = 3",
                "UPDATE events SET id = 3 WHERE id = 4",
                "UPDATE events SET id = 4 WHERE id = -1",
            ],
            3,
            "",
        ),
    ],
    ids=[
        "modified-payload",
        "modified-visibility",
        "deleted-creation",
        "deleted",
        "deleted-last",
        "swapped",
    ],
)
async def test_verify_finds_the_first_tampered_event(
    store_factory: StoreFactory,
    raw: RawDatabase,
    statements: list[str],
    bad_id: int,
    reason: str,
) -> None:
    await make_log(store_factory)
    raw.tamper(*statements)
    async with store_factory() as store:
        report = await store.verify()
    assert not report.ok
    assert report.first_bad_event_id == bad_id
    assert reason in (report.reason or "")


async def test_verify_of_one_run_checks_it_against_the_chain(
    store_factory: StoreFactory, raw: RawDatabase
) -> None:
    await make_log(store_factory)
    raw.tamper('UPDATE events SET payload = \'{"content":"x","role":"user"}\' WHERE id = 4')
    async with store_factory() as store:
        assert (await store.verify(run_id="run-b")).ok  # run-b's events are intact
        report = await store.verify(run_id="run-a")
    assert not report.ok
    assert report.first_bad_event_id == 4


def test_driver_errors_are_translated_at_the_boundary(raw: RawDatabase) -> None:
    unique, unavailable = raw.driver_errors()
    assert isinstance(raw.translate(unique), ConcurrencyConflict)
    assert isinstance(raw.translate(unavailable), StoreUnavailable)
    assert raw.translate(ValueError("not ours")) is None


async def test_the_writer_hashes_every_name_as_the_chain_defines(store: EventStore) -> None:
    """The writer writes the hashed text itself (parts shared by a request quoted once): for
    names and payloads that JSON escapes, it must give ``chain.event_hash``'s bytes exactly."""
    org, run, conversation = 'org "ü" \\ ✓', "run-\u2028\u2029-😀", 'c-"\\'
    await store.append(org, run, [created()], conversation_id=conversation)
    odd = [
        message('say "hi"\n\t\x00\x1f\x7f \\ é 😀 \u2028'),
        NewEvent('custom.say "hi" \\', {"k\n": ["\x01", 1.5e-7, 2**70]}),
        NewEvent("custom.ok", {}, visibility="internal"),
    ]
    await store.append(org, run, odd)
    events = await all_events(store)
    assert len(events) == 4
    for event in events:
        fields = {name: getattr(event, name) for name in ("id", "organization_id", "run_id")}
        assert event.hash == event_hash(
            **fields,
            conversation_id=event.conversation_id,
            sequence=event.sequence,
            event_type=event.event_type,
            visibility=event.visibility,
            payload_json=event.payload_json,
            created_at=event.created_at,
            prev_hash=event.prev_hash,
        )
    assert (await store.verify()).ok


async def test_consumer_cursors_survive_reopen_and_never_move_back(
    store_factory: StoreFactory,
) -> None:
    async with store_factory() as store:
        assert await store.consumer_cursors() == {}
        await store.set_consumer_cursor("otel", 5)
        await store.set_consumer_cursor("otel", 3)
        await store.set_consumer_cursor("other", 1)
    async with store_factory() as reopened:
        assert await reopened.consumer_cursors() == {"otel": 5, "other": 1}
        await reopened.set_consumer_cursor("otel", 9)
        assert (await reopened.consumer_cursors())["otel"] == 9
