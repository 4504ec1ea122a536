"""Finding 6 of issue 14: audit answers and /metrics carry no other organization's runs,
counts or content (docs/security.md, "Audit answers and metrics")."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from api.server.auth import Role
from api.server.runner import check_settings
from api.server.settings import Settings
from eventstore import UnknownRun
from tests.api.conftest import ServerFactory
from tests.e2e.conftest import ProcessFactory, create_key, free_port, server_process
from tests.eventstore.helpers import custom
from tests.eventstore.helpers import new_run as store_run
from tests.security.conftest import ORGANIZATIONS, Tenants

from ..conftest import StoreFactory

__all__ = ["server_process"]

pytestmark = pytest.mark.anyio

METRICS_TOKEN = "metrics-secret-for-the-scraper"


async def new_run(tenants: Tenants, organization: str, events: int) -> str:
    """A run of ``organization`` with ``events`` custom events appended after its creation."""
    user = tenants.client(organization, Role.USER)
    run: str = (await user.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
    appended = [
        {"event_type": "custom.step", "payload": {"secret": f"{organization}-n{n}"}}
        for n in range(events)
    ]
    operator = tenants.client(organization, Role.OPERATOR)
    answer = await operator.post(f"/v1/runs/{run}/events", json={"events": appended})
    assert answer.status_code == 201, answer.text
    return run


async def own_events(tenants: Tenants, organization: str) -> list[dict[str, Any]]:
    """Every event of ``organization`` (an admin sees every visibility)."""
    admin = tenants.client(organization, Role.ADMIN)
    page = (await admin.get("/v1/events", params={"limit": 1000})).json()
    assert page["next_cursor"] is None
    items: list[dict[str, Any]] = page["items"]
    return items


async def verify(tenants: Tenants, organization: str, **params: str) -> httpx.Response:
    return await tenants.client(organization, Role.ADMIN).get("/v1/audit/verify", params=params)


def tamper(database: str, statement: str) -> None:
    """Change the log behind the server's back, past the append-only triggers."""
    if database.startswith(("postgresql://", "postgres://")):
        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute("ALTER TABLE events DISABLE TRIGGER USER")
            connection.execute(statement)
        return
    lite = sqlite3.connect(database, isolation_level=None)
    try:
        lite.execute("DROP TRIGGER events_no_update")
        lite.execute(statement)
    finally:
        lite.close()


def raw_sql(database: str, statement: str) -> None:
    if database.startswith(("postgresql://", "postgres://")):
        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute(statement)
        return
    lite = sqlite3.connect(database, isolation_level=None)
    try:
        lite.execute(statement)
    finally:
        lite.close()


# -- audit/verify of one run ---------------------------------------------------------------------


async def test_verifying_another_organizations_run_is_404_like_every_foreign_run(
    tenants: Tenants,
) -> None:
    foreign = await new_run(tenants, "org-b", 2)
    answer = await verify(tenants, "org-a", run_id=foreign)
    like_other_routes = await tenants.client("org-a", Role.ADMIN).get(f"/v1/runs/{foreign}")
    assert answer.status_code == 404
    assert answer.json() == like_other_routes.json()
    assert answer.json()["error"]["code"] == "run_not_found"


async def test_verifying_an_unknown_run_is_404(tenants: Tenants) -> None:
    answer = await verify(tenants, "org-a", run_id="run-that-never-was")
    assert answer.status_code == 404
    assert answer.json()["error"] == {
        "code": "run_not_found",
        "message": "run run-that-never-was not found",
        "details": {"run_id": "run-that-never-was"},
    }


async def test_verifying_an_own_run_counts_its_events(tenants: Tenants) -> None:
    await new_run(tenants, "org-b", 5)
    own = await new_run(tenants, "org-a", 2)
    answer = (await verify(tenants, "org-a", run_id=own)).json()
    run_events = [e for e in await own_events(tenants, "org-a") if e["run_id"] == own]
    assert answer == {
        "ok": True,
        "events": len(run_events),
        "head_id": run_events[-1]["id"],
        "head_hash": run_events[-1]["hash"],
    }


# -- audit/verify of the whole log ---------------------------------------------------------------


async def test_the_whole_log_verify_counts_only_the_callers_organization(
    tenants: Tenants,
) -> None:
    for organization, extra in (("org-a", 1), ("org-b", 4), ("org-a", 2), ("org-b", 3)):
        await new_run(tenants, organization, extra)
    head = (await tenants.client("org-a", Role.USER).get("/readyz")).json()["head_id"]
    for organization in ORGANIZATIONS:
        answer = await verify(tenants, organization)
        assert answer.status_code == 200
        body = answer.json()
        assert body["ok"] is True
        assert body["events"] == len(await own_events(tenants, organization))
        assert body["head_id"] == head  # the chain's head is global and names no one
        assert set(body) == {"ok", "events", "head_id", "head_hash"}


async def test_a_tampered_event_of_another_organization_is_named_by_id_only(
    tenants: Tenants,
) -> None:
    await new_run(tenants, "org-a", 1)
    foreign_run = await new_run(tenants, "org-b", 2)
    await new_run(tenants, "org-a", 1)
    bad = (await own_events(tenants, "org-b"))[-1]
    tamper(
        tenants.server.app.state.settings.database,
        f'UPDATE events SET payload = \'{{"secret":"rewritten"}}\' WHERE id = {bad["id"]}',
    )
    answer = await verify(tenants, "org-a")
    assert answer.status_code == 200
    body = answer.json()
    verified_before = [e for e in await own_events(tenants, "org-a") if e["id"] < bad["id"]]
    assert body["ok"] is False
    assert body["first_bad_event_id"] == bad["id"]
    assert body["reason"] == "hash does not match the event's content: the event was modified"
    assert body["events"] == len(verified_before)
    assert body["head_id"] == bad["id"] - 1
    assert set(body) == {"ok", "events", "head_id", "head_hash", "first_bad_event_id", "reason"}
    for foreign in ("org-b", foreign_run, "custom.step", "rewritten", "org-b-n"):
        assert foreign not in answer.text
    assert (await verify(tenants, "org-b")).json()["first_bad_event_id"] == bad["id"]


async def test_a_tampered_event_breaks_only_the_run_it_belongs_to(tenants: Tenants) -> None:
    own = await new_run(tenants, "org-a", 1)
    foreign_run = await new_run(tenants, "org-b", 1)
    await new_run(tenants, "org-a", 1)
    bad = (await own_events(tenants, "org-b"))[-1]
    tamper(
        tenants.server.app.state.settings.database,
        f"UPDATE events SET payload = '{{}}' WHERE id = {bad['id']}",
    )
    assert (await verify(tenants, "org-a", run_id=own)).json()["ok"] is True
    assert (await verify(tenants, "org-a", run_id=foreign_run)).status_code == 404
    broken = (await verify(tenants, "org-b", run_id=foreign_run)).json()
    assert (broken["ok"], broken["first_bad_event_id"]) == (False, bad["id"])


# -- the store's verify, scoped to an organization -----------------------------------------------


async def test_the_store_counts_one_organization_and_knows_no_foreign_run(
    store_factory: StoreFactory,
) -> None:
    async with store_factory() as store:
        await store_run(store, "run-a", org="org-a")
        await store_run(store, "run-b", org="org-b")
        await store.append("org-b", "run-b", [custom(1), custom(2)])
        assert (await store.verify()).events == 4
        assert (await store.verify(organization_id="org-a")).events == 1
        assert (await store.verify(organization_id="org-b")).events == 3
        assert (await store.verify(run_id="run-b", organization_id="org-b")).events == 3
        for run, organization in (("run-b", "org-a"), ("nowhere", None)):
            with pytest.raises(UnknownRun):
                await store.verify(run_id=run, organization_id=organization)


# -- /metrics ------------------------------------------------------------------------------------


@pytest.fixture
async def token_tenants(server_factory: Any) -> AsyncIterator[Tenants]:
    """Two organizations on a server started with ``--metrics-token``."""
    server = await server_factory(heartbeat_seconds=15.0, metrics_token=METRICS_TOKEN)
    found = await Tenants(server).create_keys()
    yield found
    await found.aclose()


async def test_metrics_are_not_served_to_tenants_by_default(tenants: Tenants) -> None:
    await new_run(tenants, "org-a", 1)
    async with tenants.server.client() as anonymous:
        refused = [await anonymous.get("/metrics")]
    for organization in ORGANIZATIONS:
        refused.append(await tenants.client(organization, Role.ADMIN).get("/metrics"))
    for answer in refused:
        assert answer.status_code == 404
        assert "--metrics-token" in answer.json()["error"]["message"]
        assert "runtrack_runs" not in answer.text


async def test_metrics_need_their_own_token(token_tenants: Tenants) -> None:
    await new_run(token_tenants, "org-a", 1)
    await new_run(token_tenants, "org-b", 1)
    server = token_tenants.server
    for key in (None, token_tenants.key("org-a", Role.ADMIN), "not-the-token"):
        async with server.client(key) as scraper:
            answer = await scraper.get("/metrics")
        assert answer.status_code == 401, key
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "runtrack_runs" not in answer.text
    async with server.client(METRICS_TOKEN) as scraper:
        served = await scraper.get("/metrics")
    assert served.status_code == 200
    assert 'runtrack_runs{status="queued"} 2.0' in served.text


async def test_metrics_stay_open_in_open_mode(server_factory: Any) -> None:
    server = await server_factory()
    async with server.client() as anonymous:
        assert (await anonymous.post("/v1/runs", json={"agent_id": "a"})).status_code == 201
        answer = await anonymous.get("/metrics")
    assert answer.status_code == 200
    assert 'runtrack_runs{status="queued"} 1.0' in answer.text


async def test_metrics_on_their_own_listen_address(
    server_process: ProcessFactory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``runtrack serve --metrics-listen``, with the token from the environment."""
    key = await create_key(database_url, "admin")
    monkeypatch.setenv("RUNTRACK_METRICS_TOKEN", METRICS_TOKEN)
    metrics_port = free_port()
    server = await server_process(
        "--metrics-listen", f"127.0.0.1:{metrics_port}", database=database_url
    )
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as tenant:
        created = await tenant.post(f"{server.url}/v1/runs", json={"agent_id": "a"})
        assert created.status_code == 201
        assert (await tenant.get(f"{server.url}/metrics")).status_code == 404
        assert (await tenant.get(f"{metrics_url}/v1/runs")).status_code == 404
        assert (await tenant.get(f"{metrics_url}/metrics")).status_code == 401
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as scraper:
        served = await scraper.get(f"{metrics_url}/metrics")
        assert (await scraper.get(f"{server.url}/metrics")).status_code == 404
    assert served.status_code == 200
    assert 'runtrack_runs{status="queued"} 1.0' in served.text


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"metrics_listen": "127.0.0.1"}, "HOST:PORT"),
        ({"metrics_listen": "127.0.0.1:99999"}, "HOST:PORT"),
        ({"metrics_listen": "127.0.0.1:8000"}, "a port of its own"),
        ({"metrics_token": " "}, "--metrics-token is empty"),
    ],
)
def test_metrics_settings_that_cannot_be_served_are_refused(
    options: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        check_settings(Settings(port=8000, **options))  # type: ignore[arg-type]


async def test_readiness_names_no_database_detail(
    server_factory: ServerFactory, database_url: str
) -> None:
    """``/readyz`` takes no key: a failing database is named by kind, never by its text."""
    server = await server_factory()
    raw_sql(database_url, "ALTER TABLE events RENAME TO events_hidden_name")
    async with server.client() as client:
        answer = await client.get("/readyz")
    raw_sql(database_url, "ALTER TABLE events_hidden_name RENAME TO events")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert "events" not in answer.text, answer.text
