"""A lane is ``(organization, lane_key)``: runs of one organization never wait on, block, or
reorder another organization's runs in a lane of the same name (finding 1 of issue 14)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.server.auth import Role
from eventstore import Dialect, WriteContext, open_store, schema_fingerprint
from projections import RunCommands, RunProjection, RunStatus
from projections.readmodel import SCHEMA
from tests.api.conftest import ServerFactory
from tests.security.conftest import Tenants

pytestmark = pytest.mark.anyio

LANE = "shared-lane"


@dataclass
class Org:
    """One organization's user key (creates, reads) and operator key (claims, reports, resumes)."""

    user: httpx.AsyncClient
    operator: httpx.AsyncClient

    async def create(self, **body: Any) -> str:
        answer = await self.user.post("/v1/runs", json={"agent_id": "agent", **body})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    async def claim(self) -> httpx.Response:
        return await self.operator.post("/v1/runs/claim", json={"worker_id": "w"})

    async def claimed(self) -> str:
        answer = await self.claim()
        assert answer.status_code == 200, answer.text
        return str(answer.json()["run"]["id"])

    async def status(self, run_id: str) -> str:
        answer = await self.user.get(f"/v1/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        return str(answer.json()["status"])

    async def report(self, run_id: str, *events: dict[str, Any]) -> None:
        answer = await self.operator.post(f"/v1/runs/{run_id}/events", json={"events": events})
        assert answer.status_code == 201, answer.text

    async def end(self, run_id: str) -> None:
        await self.report(run_id, _status(stop_reason="end_turn"))


def _status(**payload: Any) -> dict[str, Any]:
    return {"event_type": "run_status_changed", "payload": payload}


def _org(tenants: Tenants, organization: str) -> Org:
    return Org(tenants.client(organization, Role.USER), tenants.client(organization, Role.OPERATOR))


@pytest.fixture
def orgs(tenants: Tenants) -> tuple[Org, Org]:
    return _org(tenants, "org-a"), _org(tenants, "org-b")


async def test_another_organizations_queued_run_does_not_break_a_claim(
    orgs: tuple[Org, Org],
) -> None:
    a, b = orgs
    mine = await a.create(lane_key=LANE)
    theirs = await b.create(lane_key=LANE)
    answer = await a.claim()
    assert answer.status_code == 200, answer.text
    assert answer.json()["run"]["id"] == mine
    assert theirs not in answer.text
    assert await b.status(theirs) == "queued"
    assert await b.claimed() == theirs


async def test_another_organizations_active_run_does_not_hold_the_lane(
    orgs: tuple[Org, Org],
) -> None:
    a, b = orgs
    holder = await a.create(conversation_id="conv-1")  # default lane: conversation:conv-1
    assert await a.claimed() == holder
    theirs = await b.create(conversation_id="conv-1")
    assert await b.status(theirs) == "queued"
    answer = await b.claim()
    assert answer.status_code == 200, answer.text
    assert answer.json()["run"]["id"] == theirs


async def test_one_organizations_lane_stays_fifo_among_another_organizations_runs(
    orgs: tuple[Org, Org],
) -> None:
    a, b = orgs
    b_first = await b.create(lane_key=LANE)
    a_first = await a.create(lane_key=LANE)
    b_second = await b.create(lane_key=LANE)
    a_second = await a.create(lane_key=LANE)
    assert await b.claimed() == b_first
    assert await a.claimed() == a_first
    assert await a.status(a_second) == "waiting_on_lane"
    assert (await a.claim()).status_code == 204  # a_second waits behind a_first, not b's runs
    await b.end(b_first)
    assert (await a.claim()).status_code == 204
    assert await b.claimed() == b_second
    await a.end(a_first)
    assert await a.claimed() == a_second


async def test_a_resume_ignores_another_organization_holding_a_lane_of_that_name(
    orgs: tuple[Org, Org],
) -> None:
    a, b = orgs
    failed = await a.create(lane_key=LANE)
    assert await a.claimed() == failed
    checkpoint = {"checkpoint_id": "c1", "kind": "input"}
    await a.report(
        failed, {"event_type": "checkpoint_created", "payload": checkpoint}, _status(to="timed_out")
    )
    holder = await b.create(lane_key=LANE)
    assert await b.claimed() == holder
    resumed = await a.operator.post(f"/v1/runs/{failed}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "resuming"
    assert await a.claimed() == failed


async def test_a_busy_lane_names_only_the_callers_own_run(orgs: tuple[Org, Org]) -> None:
    a, b = orgs
    await b.create(lane_key=LANE)
    theirs = await b.claimed()
    holder = await a.create(lane_key=LANE)
    other = await a.create(lane_key=LANE)
    assert await a.claimed() == holder
    refused = await a.operator.post(
        f"/v1/runs/{other}/events", json={"events": [_status(to="running")]}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "lane_busy"
    assert holder in refused.text
    assert theirs not in refused.text


_OLD_LANE_INDEX = (
    "CREATE INDEX IF NOT EXISTS runs_by_lane ON runs (lane_key, status, created_event_id)"
)


class _OldRunProjection(RunProjection):
    """The runs projection as released before lanes were per organization (its schema)."""

    def schema(self, dialect: Dialect) -> Sequence[str]:
        return [_OLD_LANE_INDEX if "runs_by_lane" in s else s for s in SCHEMA]


async def test_an_old_database_gets_per_organization_lanes_at_start(
    database_url: str, server_factory: ServerFactory
) -> None:
    """A database written with the global lane index is rebuilt with the new one at start.

    Its log holds what the old code wrote: org-b's run put in ``waiting_on_lane`` behind
    org-a's active run. After the upgrade that run is claimable at once.
    """
    async with open_store(database_url, projections=[RunProjection()]) as store:
        commands = RunCommands(store)
        mine = (await commands.create("org-a", "agent", lane_key=LANE)).run_id
        await commands.claim("org-a", "w")
        created = await commands.create("org-b", "agent", lane_key=LANE)
        theirs = created.run_id
        if created.status is RunStatus.QUEUED:  # what the old code appended at create
            await commands.change_status("org-b", theirs, RunStatus.WAITING_ON_LANE)
        await store.transact(_make_old)
    server = await server_factory(heartbeat_seconds=15.0)
    assert server.app.state.store.stale_projections == ["runs"]
    tenants = await Tenants(server).create_keys()
    try:
        a, b = _org(tenants, "org-a"), _org(tenants, "org-b")
        assert await a.status(mine) == "running"
        assert await b.status(theirs) == "waiting_on_lane"
        assert await b.claimed() == theirs
        async with open_store(database_url, projections=[RunProjection()]) as store:
            columns = await store.transact(_lane_index_columns)
        assert columns.replace(" ", "") == "organization_id,lane_key,status,lane_position"
    finally:
        await tenants.aclose()


def _make_old(context: WriteContext) -> None:
    """Put back the global lane index and the fingerprint the old code recorded."""
    tx = context.tx
    tx.execute("DROP INDEX runs_by_lane", ())
    tx.execute(_OLD_LANE_INDEX, ())
    old = schema_fingerprint(_OldRunProjection(), tx.dialect)
    tx.execute("UPDATE projection_schemas SET fingerprint = ? WHERE name = ?", (old, "runs"))


def _lane_index_columns(context: WriteContext) -> str:
    """The column list of the lane index, as the database states its definition."""
    tx = context.tx
    if tx.dialect.name == "sqlite":
        row = tx.fetchone("SELECT sql FROM sqlite_master WHERE name = 'runs_by_lane'", ())
    else:
        row = tx.fetchone(
            "SELECT indexdef FROM pg_indexes "
            "WHERE indexname = 'runs_by_lane' AND schemaname = current_schema()",
            (),
        )
    assert row is not None
    definition = str(row[0])
    return definition[definition.rindex("(") + 1 : definition.rindex(")")]
