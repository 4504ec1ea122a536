"""Where an archive may cut the log, and the read model across it (both backends)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from eventstore import SYSTEM_ORGANIZATION, NewEvent
from projections import archive, check, cut_for_age, parse_age, rebuild

from .conftest import ORG, Runs

pytestmark = pytest.mark.anyio

END = [NewEvent("run_status_changed", {"stop_reason": "end_turn"})]
FAIL = [
    NewEvent("checkpoint_created", {"checkpoint_id": "c1", "kind": "input"}),
    NewEvent("run_status_changed", {"stop_reason": "error"}),
]


async def finished(runs: Runs, events: list[NewEvent] = END) -> str:
    run = await runs.commands.create(ORG, "agent", metadata={"k": "v"})
    claim = await runs.commands.claim(ORG, "w", lane_key=run.lane_key)
    assert claim is not None
    assert claim.run.run_id == run.run_id
    await runs.commands.record_tool_result(ORG, run.run_id, {"tool_call_id": "t", "name": "x"})
    await runs.commands.append(ORG, run.run_id, events)
    return run.run_id


async def test_an_unended_run_holds_the_cut_and_is_reported(runs: Runs, tmp_path: Path) -> None:
    done = await finished(runs)
    waiting = await runs.commands.create(ORG, "agent")
    after = await finished(runs)
    report = await archive(runs.store, await runs.store.head(), tmp_path)
    assert report.cut == waiting.created_event_id - 1
    assert [h.reason for h in report.holds] == [f"run {waiting.run_id} (queued) has not ended"]
    assert (await runs.queries.get(ORG, done)).status.value == "completed"
    assert (await runs.queries.get(ORG, after)).status.value == "completed"


async def test_a_resumable_run_holds_the_cut_and_still_resumes(runs: Runs, tmp_path: Path) -> None:
    failed = await finished(runs, FAIL)
    await finished(runs)
    report = await archive(runs.store, await runs.store.head(), tmp_path)
    assert report.cut == 0
    assert report.events == 0
    assert "is resumable" in report.holds[0].reason
    resumed = await runs.commands.resume(ORG, failed)
    assert resumed.status.value == "resuming"


async def test_a_consumer_cursor_holds_the_cut(runs: Runs, tmp_path: Path) -> None:
    await finished(runs)
    await finished(runs)
    await runs.store.set_consumer_cursor("otlp", 3)
    report = await archive(runs.store, await runs.store.head(), tmp_path)
    assert report.cut == 3
    assert report.holds[0].reason == "consumer otlp has passed only event 3"


async def test_system_runs_never_hold_the_cut(runs: Runs, tmp_path: Path) -> None:
    await runs.store.append(
        SYSTEM_ORGANIZATION,
        "system-heads",
        [NewEvent("run_created", {"agent_id": "heads"})],
        conversation_id="system",
    )
    await finished(runs)
    report = await archive(runs.store, await runs.store.head(), tmp_path)
    assert report.cut == await runs.store.head()
    assert report.holds == []


async def test_rebuild_after_an_archive_equals_the_live_tables(runs: Runs, tmp_path: Path) -> None:
    first = await finished(runs)
    second = await finished(runs)
    report = await archive(runs.store, await runs.store.head() - 2, tmp_path, batch=3)
    assert report.cut > 0
    await runs.commands.append(ORG, second, [NewEvent("metadata_updated", {"patch": {"k": 2}})])
    later = await finished(runs)
    ids = [first, second, later]
    before = [await runs.queries.get(ORG, run_id) for run_id in ids]
    assert (await check(runs.store)).ok
    rebuilt = await rebuild(runs.store)
    assert rebuilt.runs == 3
    assert [await runs.queries.get(ORG, run_id) for run_id in ids] == before
    rows = await runs.store.fetchall("SELECT run_id FROM tool_results WHERE run_id = ?", (first,))
    assert len(rows) == 1
    assert (await check(runs.store)).ok


async def test_age_finds_the_last_event_older_than_it(runs: Runs) -> None:
    await finished(runs)
    head = await runs.store.head()
    assert await cut_for_age(runs.store, timedelta(days=1)) == 0
    assert await cut_for_age(runs.store, timedelta(seconds=-60)) == head
    assert parse_age("30d") == timedelta(days=30)
    with pytest.raises(ValueError, match="whole number and a unit"):
        parse_age("30 days")
