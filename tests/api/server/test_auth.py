"""API keys, roles and organizations over real HTTP."""

from __future__ import annotations

import pytest

from api.server.app import create_app
from api.server.auth import Role
from api.server.settings import Settings
from tests.api.conftest import LiveServer, ServerFactory

pytestmark = pytest.mark.anyio


async def test_open_mode_on_loopback_until_a_key_exists(server: LiveServer) -> None:
    async with server.client() as anonymous:
        assert (await anonymous.get("/v1/runs")).status_code == 200
        await server.key(Role.ADMIN)
        refused = await anonymous.get("/v1/runs")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"


async def test_probes_take_no_key_and_metrics_need_the_operators_token(
    server_factory: ServerFactory,
) -> None:
    """Probes hold no tenant's key; /metrics counts every organization's runs, so it needs the
    deployment operator's own token (docs/api.md, "Operations")."""
    server = await server_factory(metrics_token="scraper-token")
    key = await server.key(Role.USER, organization="acme")
    async with server.client(key) as client:
        assert (await client.post("/v1/runs", json={"agent_id": "a"})).status_code == 201
        assert (await client.get("/metrics")).status_code == 401
    async with server.client() as anonymous:
        assert (await anonymous.get("/v1/runs")).status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/readyz")).status_code == 200
        assert (await anonymous.get("/metrics")).status_code == 401
    async with server.client("scraper-token") as scraper:
        metrics = await scraper.get("/metrics")
    assert metrics.status_code == 200
    assert 'runtrack_runs{status="queued"} 1.0' in metrics.text


async def test_me_says_who_the_key_is(server: LiveServer) -> None:
    async with server.client() as anonymous:
        assert (await anonymous.get("/v1/me")).json() == {
            "key_id": None,
            "organization_id": "default",
            "role": "admin",
            "max_visibility": "internal",
        }
    for role, visibility in ((Role.USER, "user"), (Role.OPERATOR, "operator")):
        key = await server.key(role, organization="acme")
        async with server.client(key) as client:
            me = (await client.get("/v1/me")).json()
        assert me == {
            "key_id": key.split("_")[1],
            "organization_id": "acme",
            "role": role.label,
            "max_visibility": visibility,
        }
    async with server.client() as anonymous:
        assert (await anonymous.get("/v1/me")).status_code == 401


async def test_unknown_and_revoked_keys_are_refused(server: LiveServer) -> None:
    key = await server.key(Role.USER)
    async with server.client(key) as client:
        assert (await client.get("/v1/runs")).status_code == 200
    async with server.client("rtk_000000000000_nope") as stranger:
        assert (await stranger.get("/v1/runs")).status_code == 401
    key_id = key.split("_")[1]
    assert await server.keys.revoke(key_id)
    async with server.client(key) as client:
        assert (await client.get("/v1/runs")).status_code == 401


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.USER, {"create", "read", "cancel"}),
        (Role.OPERATOR, {"create", "read", "cancel", "append", "claim", "resume", "heartbeat"}),
        (
            Role.ADMIN,
            {"create", "read", "cancel", "append", "claim", "resume", "heartbeat", "audit"},
        ),
    ],
)
async def test_each_role_may_do_what_it_should(
    server: LiveServer, role: Role, allowed: set[str]
) -> None:
    admin = await server.key(Role.ADMIN)
    key = await server.key(role)
    async with server.client(admin) as boss, server.client(key) as client:
        run = (await boss.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        attempts = {
            "create": client.post("/v1/runs", json={"agent_id": "a"}),
            "read": client.get(f"/v1/runs/{run}"),
            "append": client.post(
                f"/v1/runs/{run}/events", json={"events": [{"event_type": "custom.x"}]}
            ),
            "claim": client.post("/v1/runs/claim", json={"worker_id": "w", "agent_id": "nobody"}),
            "heartbeat": client.post(f"/v1/runs/{run}/heartbeat", json={}),
            "resume": client.post(f"/v1/runs/{run}/resume"),
            "audit": client.get("/v1/audit/verify"),
            "cancel": client.post(f"/v1/runs/{run}/cancel"),
        }
        outcomes = {name: (await attempt).status_code for name, attempt in attempts.items()}
    permitted = {name for name, code in outcomes.items() if code != 403}
    assert permitted == allowed, outcomes


async def test_organizations_never_see_each_other(server: LiveServer) -> None:
    red, blue = await server.key(Role.ADMIN, "red"), await server.key(Role.ADMIN, "blue")
    async with server.client(red) as red_client, server.client(blue) as blue_client:
        run = (
            await red_client.post("/v1/runs", json={"agent_id": "a", "conversation_id": "c"})
        ).json()
        for path in (
            f"/v1/runs/{run['id']}",
            f"/v1/runs/{run['id']}/events",
            f"/v1/runs/{run['id']}/messages",
        ):
            response = await blue_client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "run_not_found"
        assert (await blue_client.post(f"/v1/runs/{run['id']}/cancel")).status_code == 404
        assert (await blue_client.get("/v1/runs")).json()["items"] == []
        assert (await blue_client.get("/v1/events")).json()["items"] == []
        status = (await blue_client.get("/v1/conversations/c/agent-status")).json()
        assert status["run"] is None


async def test_a_public_bind_without_keys_refuses_to_start(tmp_path: object) -> None:
    app = create_app(Settings(database=f"{tmp_path}/x.db", host="0.0.0.0"))
    with pytest.raises(RuntimeError, match="without API keys"):
        async with app.router.lifespan_context(app):
            pass


async def test_a_public_bind_with_keys_starts(
    server_factory: ServerFactory, tmp_path: object
) -> None:
    database = f"{tmp_path}/keys.db"
    first = await server_factory(database=database)
    await first.key(Role.ADMIN)
    await first.stop()
    app = create_app(Settings(database=database, host="0.0.0.0"))
    async with app.router.lifespan_context(app):
        assert await app.state.keys.any_active()
