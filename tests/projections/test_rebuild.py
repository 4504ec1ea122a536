"""Rebuild replaces the read model from the log; check finds any drift without writing."""

from __future__ import annotations

import gc

import pytest

from eventstore import AgentEvent, NewEvent, Visibility, canonical_json, refilled_events
from projections import RunState, RunStatus, check, evolve, rebuild, seen_at
from projections.readmodel import RUN_COLUMNS, state_to_row
from projections.rebuild import _check_not_kept

from .conftest import ORG, Runs

pytestmark = pytest.mark.anyio


async def populate(runs: Runs) -> list[str]:
    ids = []
    for n in range(6):
        run = await runs.commands.create(ORG, f"agent-{n % 2}", metadata={"n": n})
        ids.append(run.run_id)
    for _ in range(3):
        claim = await runs.commands.claim(ORG, "w")
        assert claim is not None
        await runs.commands.record_tool_result(
            ORG, claim.run.run_id, {"tool_call_id": "c", "name": "t"}
        )
        await runs.commands.append(
            ORG, claim.run.run_id, [NewEvent("run_status_changed", {"stop_reason": "end_turn"})]
        )
    return ids


async def test_rebuild_equals_the_live_tables(runs: Runs) -> None:
    ids = await populate(runs)
    before = [await runs.queries.get(ORG, run_id) for run_id in ids]
    report = await rebuild(runs.store)
    assert (report.events, report.runs) == (await runs.store.head(), 6)
    assert [await runs.queries.get(ORG, run_id) for run_id in ids] == before
    assert len(await runs.queries.tool_results(ORG, ids[0])) == 1
    assert (await check(runs.store)).ok


async def test_rebuild_equals_the_live_tables_with_questions_metadata_and_lane_waits(
    runs: Runs,
) -> None:
    """Issue 17's events: questions and answers, metadata patches, resumes and answers that
    wait in a busy lane; the rebuilt rows (and ``run_metadata``) equal the live ones."""
    asking = await runs.commands.create(ORG, "a", conversation_id="c", metadata={"k": {"x": 1}})
    claim = await runs.commands.claim(ORG, "w")
    assert claim is not None
    await runs.commands.append(
        ORG,
        asking.run_id,
        [
            NewEvent("metadata_updated", {"patch": {"k": {"x": None, "y": 2}, "progress": 1}}),
            NewEvent("checkpoint_created", {"checkpoint_id": "c1", "kind": "input"}),
            NewEvent("human_input_requested", {"question_id": "q-1", "question": "go?"}),
            NewEvent("run_status_changed", {"to": "waiting_on_human"}),
        ],
    )
    holder = await runs.commands.create(ORG, "a", conversation_id="c")
    assert await runs.commands.claim(ORG, "w") is not None
    await runs.commands.answer(ORG, asking.run_id, {"go": True}, answered_by="key-1")
    failed = await runs.commands.create(ORG, "a", conversation_id="other")
    await runs.commands.claim(ORG, "w", lane_key=failed.lane_key)
    await runs.commands.append(
        ORG,
        failed.run_id,
        [
            NewEvent("checkpoint_created", {"checkpoint_id": "c2", "kind": "input"}),
            NewEvent("run_status_changed", {"stop_reason": "error"}),
        ],
    )
    await runs.commands.resume(ORG, failed.run_id)
    ids = [asking.run_id, holder.run_id, failed.run_id]
    before = [await runs.queries.get(ORG, run_id) for run_id in ids]
    assert before[0].status.value == "waiting_on_lane"
    assert before[0].metadata == {"k": {"y": 2}, "progress": 1}
    assert (await check(runs.store)).ok
    await rebuild(runs.store)
    assert [await runs.queries.get(ORG, run_id) for run_id in ids] == before
    assert (await check(runs.store)).ok


@pytest.mark.parametrize("enabled", [True, False])
async def test_rebuild_and_check_leave_automatic_collections_as_they_were(
    runs: Runs, enabled: bool
) -> None:
    """The fold pauses the cyclic collector and leaves it as it found it."""
    await populate(runs)
    was = gc.isenabled()
    try:
        if enabled:
            gc.enable()
        else:
            gc.disable()
        await rebuild(runs.store)
        assert gc.isenabled() is enabled
        assert (await check(runs.store)).ok
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()


@pytest.mark.parametrize(
    ("tamper", "complaint"),
    [
        ("UPDATE runs SET status = 'failed' WHERE agent_id = 'agent-1'", "differs in status"),
        ("DELETE FROM runs WHERE agent_id = 'agent-0'", "missing from runs"),
        ("DELETE FROM run_metadata", "run_metadata differs"),
        ("DELETE FROM tool_results", "tool_results differs"),
    ],
)
async def test_check_reports_drift_and_rebuild_repairs_it(
    runs: Runs, tamper: str, complaint: str
) -> None:
    await populate(runs)
    await runs.store.transact(lambda context: context.tx.execute(tamper))  # read models are mutable
    drift = await check(runs.store)
    assert not drift.ok
    assert any(complaint in line for line in drift.differences)
    await rebuild(runs.store)
    assert (await check(runs.store)).ok


async def test_check_tolerates_appends_made_while_it_runs(runs: Runs) -> None:
    await populate(runs)
    run = await runs.commands.create(ORG, "agent-late")
    report = await check(runs.store)
    assert report.ok, report.differences
    assert report.runs == 7
    assert run.run_id


async def test_rebuild_folds_the_same_capped_content_views(runs: Runs) -> None:
    """Each role's view of a run's content is part of the read model, so it is rebuilt too."""
    run = await runs.commands.create(ORG, "agent")
    claim = await runs.commands.claim(ORG, "w")
    assert claim is not None
    events = [
        NewEvent("journal_updated", {"objective": level}, level)
        for level in ("user", "operator", "internal")
    ]
    events.append(NewEvent("tool_finished", {"tool_call_id": "c", "name": "t"}, "internal"))
    events.append(NewEvent("run_status_changed", {"to": "failed", "detail": "x"}, "operator"))
    await runs.commands.append(ORG, run.run_id, events)
    live = await runs.queries.get(ORG, run.run_id)
    assert live.content_views["user"]["journal"]["objective"] == "user"
    assert live.content_views["user"]["error"] is None
    assert live.content_views["operator"]["error"] == "x"
    await runs.store.transact(
        lambda context: context.tx.execute("UPDATE runs SET content_views = '{}'")
    )
    assert any("content_views" in line for line in (await check(runs.store)).differences)
    await rebuild(runs.store)
    assert await runs.queries.get(ORG, run.run_id) == live
    assert (await check(runs.store)).ok


async def test_a_row_without_content_views_shows_capped_readers_no_content(runs: Runs) -> None:
    run = await runs.commands.create(ORG, "agent")
    claim = await runs.commands.claim(ORG, "w")
    assert claim is not None
    await runs.commands.append(ORG, run.run_id, [NewEvent("journal_updated", {"objective": "o"})])
    await runs.store.transact(
        lambda context: context.tx.execute("UPDATE runs SET content_views = '{}'")
    )
    state = await runs.queries.get(ORG, run.run_id)
    assert seen_at(state, Visibility.OPERATOR).journal is None
    assert seen_at(state, Visibility.INTERNAL).journal == state.journal


def test_a_fold_that_keeps_the_refilled_event_is_refused() -> None:
    """The rebuild refills one event per row: whatever kept it would see it change."""
    row = (1, ORG, "run", "conv", 1, "run_created", "user", '{"agent_id":"a"}', "t", "", "")
    (event,) = refilled_events([row])
    _check_not_kept(event)
    kept = [event]
    with pytest.raises(RuntimeError, match="kept an event"):
        _check_not_kept(event)
    assert kept


def test_the_views_of_a_run_without_content_are_written_as_the_encoder_writes_them() -> None:
    """``state_to_row`` writes the views of a run with no content from a constant (most
    short runs): the same text as encoding them, and a run with content still gets its own."""
    row = (1, ORG, "run", "conv", 1, "run_created", "user", '{"agent_id":"a"}', "t", "", "")
    state = evolve(None, AgentEvent.from_row(row))
    column = RUN_COLUMNS.split(", ").index("content_views")
    assert state_to_row(state)[column] == canonical_json(state.content_views)
    views = state.content_views
    state.content_views = {**views, "user": {**views["user"], "detail": "x"}}
    assert state_to_row(state)[column] == canonical_json(state.content_views)
    assert '"detail":"x"' in state_to_row(state)[column]


@pytest.mark.parametrize(
    "payload",
    [
        '{"agent_id":"a"}',
        '{"agent_id":"a","callback_url":"http://h/c","lane_key":"l","metadata":{"k":1},'
        '"parent_run_id":"p"}',
    ],
)
def test_a_created_run_is_the_state_the_dataclass_builds(payload: str) -> None:
    """The fold fills a new state's dict itself (a rebuild makes one per run): every field,
    in the dataclass's order, equal to what ``RunState(...)`` builds from the same event."""
    row = (4, ORG, "run", "conv", 1, "run_created", "user", payload, "t", "", "")
    event = AgentEvent.from_row(row)
    built = RunState(
        run_id="run",
        organization_id=ORG,
        conversation_id="conv",
        agent_id="a",
        lane_key=event.payload.get("lane_key", "conversation:conv"),
        parent_run_id=event.payload.get("parent_run_id"),
        status=RunStatus.QUEUED,
        created_at="t",
        created_event_id=4,
        last_event_id=4,
        last_sequence=1,
        updated_at="t",
        status_changed_at="t",
        callback_url=event.payload.get("callback_url"),
        metadata=event.payload.get("metadata", {}),
        lane_position=4,
    )
    created = evolve(None, event)
    assert created == built
    assert list(created.__dict__) == list(built.__dict__)
    assert created.metadata is not event.payload.get("metadata")
