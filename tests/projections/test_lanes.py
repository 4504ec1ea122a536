"""Lanes: at most one active run per lane, claims FIFO per lane, every way in honours the lane."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from eventstore import EventFilter, NewEvent, WriteContext
from projections import ACTIVE, LaneBusy, RunStatus
from projections.commands import claim_query

from .conftest import ORG, Runs

pytestmark = pytest.mark.anyio


async def test_a_run_behind_an_active_one_waits_on_its_lane(runs: Runs) -> None:
    first = await runs.commands.create(ORG, "agent", conversation_id="c")
    queued = await runs.commands.create(ORG, "agent", conversation_id="c")
    await runs.commands.claim(ORG, "w")
    assert (await runs.queries.get(ORG, queued.run_id)).status is RunStatus.WAITING_ON_LANE
    late = await runs.commands.create(ORG, "agent", conversation_id="c")
    assert late.status is RunStatus.WAITING_ON_LANE
    assert await runs.commands.claim(ORG, "w2") is None
    await runs.commands.change_status(ORG, first.run_id, stop_reason="end_turn")
    claim = await runs.commands.claim(ORG, "w2")
    assert claim is not None
    assert claim.run.run_id == queued.run_id


async def test_a_worker_cannot_make_a_second_run_of_a_lane_active(runs: Runs) -> None:
    await runs.commands.create(ORG, "agent", conversation_id="c")
    other = await runs.commands.create(ORG, "agent", conversation_id="c")
    await runs.commands.claim(ORG, "w")
    with pytest.raises(LaneBusy):
        await runs.commands.change_status(ORG, other.run_id, RunStatus.RUNNING)
    with pytest.raises(LaneBusy):
        await runs.store.append(
            ORG, other.run_id, [NewEvent("run_status_changed", {"to": "running"})]
        )


async def test_claims_filter_by_agent(runs: Runs) -> None:
    await runs.commands.create(ORG, "agent-a")
    wanted = await runs.commands.create(ORG, "agent-b")
    claim = await runs.commands.claim(ORG, "w", agent_id="agent-b")
    assert claim is not None
    assert claim.run.run_id == wanted.run_id


async def test_racing_claimers_keep_one_active_run_per_lane_and_serve_lanes_fifo(
    runs: Runs,
) -> None:
    """20 claimers over 5 lanes: never two active in a lane; each lane served in creation order."""
    lanes = [f"lane-{n}" for n in range(5)]
    created: dict[str, list[str]] = defaultdict(list)
    for n in range(30):
        lane = lanes[n % 5]
        run = await runs.commands.create(ORG, "agent", lane_key=lane)
        created[lane].append(run.run_id)
    claimed: dict[str, list[str]] = defaultdict(list)

    async def claimer(worker: int) -> None:
        while sum(len(v) for v in claimed.values()) < 30:
            claim = await runs.commands.claim(ORG, f"worker-{worker}")
            if claim is None:
                await asyncio.sleep(0)
                continue
            claimed[claim.run.lane_key].append(claim.run.run_id)
            await runs.commands.change_status(ORG, claim.run.run_id, stop_reason="end_turn")

    await asyncio.wait_for(asyncio.gather(*(claimer(w) for w in range(20))), timeout=60)
    assert claimed == created
    assert await _max_active_per_lane(runs) == 1


async def _max_active_per_lane(runs: Runs) -> int:
    """Replay the log and track, at every event, how many runs of each lane were active."""
    lane_of: dict[str, str] = {}
    status: dict[str, str] = {}
    peak = 0
    cursor = 0
    while True:
        page = await runs.store.read(EventFilter(ORG), after=cursor, limit=1000)
        for event in page.events:
            if event.event_type == "run_created":
                lane_of[event.run_id] = event.payload["lane_key"]
            elif event.event_type == "run_status_changed":
                status[event.run_id] = event.payload["to"]
                lane = lane_of[event.run_id]
                active = [r for r, s in status.items() if lane_of[r] == lane and s in ACTIVE]
                peak = max(peak, len(active))
        if not page.events:
            return peak
        cursor = page.position


async def test_the_claim_query_searches_the_lane_index_by_organization(runs: Runs) -> None:
    """A claim's lane subqueries search ``runs_by_lane`` by organization and lane.

    SQLite searches it for both (is the lane free, is the run first in it). PostgreSQL searches it
    for the queue order and may hash the few active runs once instead of searching per run.
    """
    for n in range(40):
        await runs.commands.create(f"org-{n % 2}", "agent", lane_key=f"lane-{n % 8}")
    for n in range(4):
        await runs.commands.claim(f"org-{n % 2}", "w")
    plan = await runs.store.transact(lambda context: _claim_plan(context, "org-0"))
    shown = "\n".join(plan)
    assert _searches_lane_index(plan, "o"), shown
    if runs.store.dialect.name == "sqlite":
        assert _searches_lane_index(plan, "a"), shown
    assert "Seq Scan" not in shown, shown  # PostgreSQL reads every alias through an index
    assert "SCAN " not in shown, shown  # and so does SQLite


def _searches_lane_index(plan: list[str], alias: str) -> bool:
    """Whether the plan reads ``runs`` as ``alias`` through ``runs_by_lane`` by organization."""
    sqlite_search = f"SEARCH {alias} USING COVERING INDEX runs_by_lane (organization_id=? AND "
    for line, following in zip(plan, [*plan[1:], ""], strict=True):
        if sqlite_search in line:
            return True
        if f"using runs_by_lane on runs {alias} " in line:
            return following.strip().startswith(
                "Index Cond: ((organization_id = r.organization_id)"
            )
    return False


def _claim_plan(context: WriteContext, organization_id: str) -> list[str]:
    sql, params = claim_query(organization_id, None, None)
    tx = context.tx
    if tx.dialect.name == "sqlite":
        return [str(row[-1]) for row in tx.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)]
    tx.execute("ANALYZE runs", ())
    tx.execute("SET LOCAL enable_seqscan = off", ())  # too few rows for the planner to care
    try:
        return [str(row[0]) for row in tx.fetchall(f"EXPLAIN {sql}", params)]
    finally:
        tx.execute("SET LOCAL enable_seqscan = on", ())
