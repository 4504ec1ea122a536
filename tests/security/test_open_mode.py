"""Open mode (no key ever created, loopback bind) serves only loopback pages: a web page
elsewhere can neither drive it cross-site nor read it through DNS rebinding."""

from __future__ import annotations

import pytest

from api.server.auth import Role
from tests.api.conftest import ServerFactory

pytestmark = pytest.mark.anyio

RUN = {"agent_id": "a"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "rebind.attacker.example"},
        {"Host": "rebind.attacker.example:8000"},
        {"Origin": "http://attacker.example"},
        {"Origin": "null"},
    ],
)
async def test_open_mode_refuses_foreign_hosts_and_origins(
    server_factory: ServerFactory, headers: dict[str, str]
) -> None:
    server = await server_factory()
    async with server.client() as client:
        created = await client.post("/v1/runs", json=RUN, headers=headers)
        read = await client.get("/v1/runs", headers=headers)
        listed = await client.get("/v1/runs")
    assert (created.status_code, read.status_code) == (403, 403), created.text
    assert "loopback" in created.json()["error"]["message"]
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Host": "localhost:8000", "Origin": "http://localhost:8000"},
        {"Host": "[::1]:8000", "Origin": "http://[::1]:8000"},
        {"Origin": "http://127.0.0.1:8000"},
    ],
)
async def test_open_mode_serves_loopback_pages(
    server_factory: ServerFactory, headers: dict[str, str]
) -> None:
    server = await server_factory()
    async with server.client() as client:
        created = await client.post("/v1/runs", json=RUN, headers=headers)
    assert created.status_code == 201, created.text


async def test_a_key_is_served_whatever_the_host(server_factory: ServerFactory) -> None:
    """A bearer key is not sent by browsers on their own: no cross-site risk to guard."""
    server = await server_factory()
    key = await server.key(Role.USER)
    async with server.client(key) as client:
        created = await client.post(
            "/v1/runs", json=RUN, headers={"Host": "runtrack.example", "Origin": "http://x.example"}
        )
    assert created.status_code == 201, created.text
