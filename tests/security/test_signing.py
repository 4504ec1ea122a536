"""Callback integrity: signatures per organization, URLs that cannot be sent, loopback behind
an unspecified address, and event types only the server may write."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from api.server import settings as server_settings
from api.server.auth import Role
from api.server.callbacks.addresses import AddressPolicy, parse_networks
from api.server.callbacks.dispatch import Dispatcher
from api.server.callbacks.sender import CallbackSender
from api.server.settings import Settings, callback_networks
from projections import callbacks
from projections.callbacks import CallbackPolicy, Delivery, sign
from tests.api.conftest import ServerFactory
from tests.api.server.test_callbacks import attempts_until_final, finished_run
from tests.projections.conftest import Runs, runs
from tests.receiver import Receiver
from tests.security.conftest import Tenants
from tests.waiting import eventually

__all__ = ["runs"]  # the fixture, for the dispatcher test

pytestmark = pytest.mark.anyio
SECRET = "deployment-s3cret"
FAST = {
    "callback_poll_seconds": 0.05,
    "leader_interval": 0.05,
    "callback_retry_base": 0.05,
    "callback_allow_networks": ("127.0.0.1/32",),
}


async def test_each_organization_verifies_its_callbacks_with_its_own_secret(
    server_factory: ServerFactory, receivers: Any
) -> None:
    receiver: Receiver = await receivers()
    live = await server_factory(callback_secret=SECRET, **FAST)
    tenants = await Tenants(live).create_keys()
    try:
        for organization in ("org-a", "org-b"):
            await finished_run(tenants.client(organization, Role.OPERATOR), receiver.url)
        requests = await receiver.wait_for(2)
    finally:
        await tenants.aclose()
    signed = {json.loads(r.body)["organization_id"]: r for r in requests}
    assert sorted(signed) == ["org-a", "org-b"]  # the organization is in the signed body
    for organization, other in (("org-a", "org-b"), ("org-b", "org-a")):
        request = signed[organization]
        timestamp = request.headers["x-runtrack-timestamp"]
        signature = request.headers["x-runtrack-signature"]
        own, others = (callbacks.organization_secret(SECRET, o) for o in (organization, other))
        assert signature == sign(own, timestamp, request.body)
        assert signature not in (
            sign(others, timestamp, request.body),
            sign(SECRET, timestamp, request.body),
        )
        stale = str(int(timestamp) - 600)  # a replayed body under an old timestamp
        assert signature != sign(own, stale, request.body)
        verify = documented_verifier()
        assert verify(own, organization, request.headers, request.body)["run_id"]
        with pytest.raises(ValueError, match="organization"):
            verify(own, other, request.headers, request.body)


def documented_verifier() -> Callable[..., dict[str, Any]]:
    """``verify_callback`` as docs/operations.md shows it to receivers."""
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    [source] = [b for b in re.findall(r"```python\n(.*?)```", text, re.DOTALL) if "verify_" in b]
    namespace: dict[str, Any] = {}
    exec(compile(source, "operations.md", "exec"), namespace)
    verify: Callable[..., dict[str, Any]] = namespace["verify_callback"]
    return verify


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", *args),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_cli_prints_an_organizations_callback_secret() -> None:
    env = {"RUNTRACK_CALLBACK_SECRET": SECRET}
    code, out, _ = await cli("callbacks", "secret", "--organization", "org-a", env=env)
    assert (code, out.strip()) == (0, callbacks.organization_secret(SECRET, "org-a"))
    flag = ("--callback-secret", SECRET)
    _, other, _ = await cli("callbacks", "secret", "--organization", "org-b", *flag, env={})
    assert other.strip() == callbacks.organization_secret(SECRET, "org-b") != out.strip()
    assert SECRET not in out + other
    missing, _, err = await cli("callbacks", "secret", "--organization", "org-a", env={})
    assert missing == 2
    assert "--callback-secret" in err


@pytest.mark.parametrize(
    "url",
    [
        "http://0177.0.0.1/",
        "http://999.1.1.1/",
        "http://0x7f.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://1.2.3.4.5/",
        "http://010.0.0.1:8080/hook",
    ],
)
async def test_numeric_hosts_other_than_dotted_quads_are_refused_at_create(
    tenants: Tenants, url: str
) -> None:
    client = tenants.client("org-a", Role.USER)
    response = await client.post("/v1/runs", json={"agent_id": "a", "callback_url": url})
    assert response.status_code == 422
    assert "IPv4" in response.text
    assert (await client.get("/v1/runs")).json()["items"] == []


async def test_a_url_the_http_layer_cannot_parse_is_one_final_attempt() -> None:
    """Such a URL may sit in a log written before the check: it is recorded, never raised."""
    sender = CallbackSender(AddressPolicy(), deadline=1.0, resolvers=1)
    try:
        outcomes = [
            await sender.send(url, b"{}", {}) for url in ("http://0177.0.0.1/", "http://999.1.1.1/")
        ]
    finally:
        await sender.aclose()
    assert {(o.status_code, o.error, o.give_up) for o in outcomes} == {(None, "invalid_url", True)}


async def test_an_attempt_that_was_not_recorded_is_paused_not_retried_each_pass(
    runs: Runs,
) -> None:
    run = await runs.commands.create("org-a", "a", callback_url="https://receiver.example/hook")
    await runs.commands.cancel("org-a", run.run_id)
    tried: list[str] = []

    async def unrecordable(delivery: Delivery) -> None:
        tried.append(delivery.run.run_id)
        raise RuntimeError("the store is down")

    dispatcher = Dispatcher(
        runs.store,
        CallbackPolicy(),
        unrecordable,
        total=4,
        per_organization=2,
        unrecorded_pause=(60.0, 60.0),
    )
    try:
        await dispatcher.dispatch()
        await eventually(lambda: tried != [] and dispatcher.in_flight == 0)
        for _ in range(3):
            await dispatcher.dispatch()
    finally:
        await dispatcher.aclose()
    assert tried == [run.run_id]


@pytest.mark.parametrize(
    ("host", "allowed", "url"),
    [
        ("0.0.0.0", "127.0.0.1/32", "http://127.0.0.1:8000/demo/callbacks"),
        ("::", "::1/128", "http://[::1]:8000/demo/callbacks"),
        ("::1", "::1/128", "http://[::1]:8000/demo/callbacks"),
        ("127.0.0.1", "127.0.0.1/32", "http://127.0.0.1:8000/demo/callbacks"),
    ],
)
def test_the_demo_on_an_unspecified_address_posts_to_loopback(
    host: str, allowed: str, url: str
) -> None:
    settings = Settings(demo=True, host=host)
    assert callback_networks(settings) == parse_networks([allowed])
    assert server_settings.demo_callback_url(settings) == url


@pytest.mark.parametrize("address", ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0"])
def test_an_unspecified_address_is_refused_whatever_is_allowed(address: str) -> None:
    policy = AddressPolicy(parse_networks(["0.0.0.0/0", "::/0"]))
    assert not policy.permits(ip_address(address))
    assert policy.permits(ip_address("127.0.0.1"))


async def test_a_callback_to_0_0_0_0_does_not_reach_loopback(
    server_factory: ServerFactory, receivers: Any
) -> None:
    receiver: Receiver = await receivers()
    url = receiver.url.replace("127.0.0.1", "0.0.0.0")
    live = await server_factory(
        **{**FAST, "callback_allow_networks": ("0.0.0.0/8", "127.0.0.1/32")}
    )
    async with live.client() as client:
        run_id = await finished_run(client, url)
        [attempt] = await asyncio.wait_for(attempts_until_final(client, run_id), 30)
    assert (attempt["error"], attempt["final"]) == ("refused_address", True)
    assert receiver.requests == []


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMIN])
@pytest.mark.parametrize(
    "event",
    [
        {"event_type": "callback_attempted", "payload": {"attempt": 1, "final": True}},
        {"event_type": "run_created", "payload": {"agent_id": "a"}},
    ],
)
async def test_server_written_events_cannot_be_appended(
    tenants: Tenants, role: Role, event: dict[str, Any]
) -> None:
    client = tenants.client("org-a", role)
    run = (await client.post("/v1/runs", json={"agent_id": "a"})).json()
    response = await client.post(f"/v1/runs/{run['id']}/events", json={"events": [event]})
    assert response.status_code == 422
    assert "written by the server" in response.text
    events = (await client.get(f"/v1/runs/{run['id']}/events")).json()["items"]
    assert [e["event_type"] for e in events] == ["run_created"]


async def test_the_schema_offers_no_server_written_event_type(tenants: Tenants) -> None:
    schema = (await tenants.client("org-a", Role.USER).get("/openapi.json")).json()
    text = json.dumps(schema["components"]["schemas"]["EventBody"])
    assert '"const": "callback_attempted"' not in text
    assert '"const": "run_created"' not in text
