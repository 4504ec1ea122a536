"""Signed chain heads through a real server, on both backends (docs/security.md, "Signed chain
heads"): what the head is and who reads it, the server's verify checking signatures and kept
heads, the system organization no key reaches, and an organization's redacted export.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.client.models import ChainHeadAnswer
from api.server.auth import Role
from api.server.runner import check_settings
from api.server.settings import Settings
from eventstore import (
    SYSTEM_ORGANIZATION,
    SYSTEM_RUN,
    AgentEvent,
    AppendSignedHead,
    EventFilter,
    EventStore,
    HeadChecks,
    HeadSigner,
    PublicKeys,
    generate_key_file,
    open_sources,
    public_hex,
    verify_sources,
)
from projections import check
from tests.api.conftest import ServerFactory
from tests.api.server.test_wire import assert_is
from tests.eventstore.audit_files import cut_tail, rehash, sql
from tests.security.conftest import ORGANIZATIONS, Tenants

pytestmark = pytest.mark.anyio

CHECKPOINT = {"checkpoint_id": "c1", "kind": "input", "state": {"secret": "internal-a"}}


@pytest.fixture
def signer(tmp_path: Path) -> HeadSigner:
    return generate_key_file(tmp_path / "signing.pem")


@pytest.fixture
async def signed(
    server_factory: ServerFactory, signer: HeadSigner, tmp_path: Path
) -> AsyncIterator[Tenants]:
    """Two organizations on a server that signs heads; the leader signed once at start (the
    interval is long), tests sign again with ``sign``."""
    server = await server_factory(
        heartbeat_seconds=15.0,
        signing_key=str(tmp_path / "signing.pem"),
        chain_head_seconds=3600.0,
    )
    found = await Tenants(server).create_keys()
    yield found
    await found.aclose()


def store_of(tenants: Tenants) -> EventStore:
    found: EventStore = tenants.server.app.state.store
    return found


async def sign(tenants: Tenants, signer: HeadSigner) -> None:
    """Sign the head now, as the leader does on its next tick."""
    assert await store_of(tenants).transact(AppendSignedHead(signer)) is not None


async def some_runs(tenants: Tenants) -> dict[str, str]:
    """A run per organization, org-a's with an internal checkpoint."""
    runs = {}
    for organization in ORGANIZATIONS:
        user = tenants.client(organization, Role.USER)
        created = await user.post(
            "/v1/runs", json={"agent_id": "a", "message": f"m-{organization}"}
        )
        assert created.status_code == 201, created.text
        runs[organization] = created.json()["id"]
    operator = tenants.client("org-a", Role.OPERATOR)
    events = [{"event_type": "checkpoint_created", "payload": CHECKPOINT}]
    answer = await operator.post(f"/v1/runs/{runs['org-a']}/events", json={"events": events})
    assert answer.status_code == 201, answer.text
    return runs


async def latest_head(tenants: Tenants, organization: str = "org-a") -> dict[str, Any]:
    answer = await tenants.client(organization, Role.USER).get("/v1/audit/head")
    assert answer.status_code == 200, answer.text
    head: dict[str, Any] = answer.json()
    return head


async def verify(tenants: Tenants, **params: str) -> dict[str, Any]:
    answer = await tenants.client("org-a", Role.ADMIN).get("/v1/audit/verify", params=params)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


async def test_the_head_is_signed_over_the_documented_bytes(
    signed: Tenants, signer: HeadSigner
) -> None:
    await some_runs(signed)
    await sign(signed, signer)
    head = await latest_head(signed)
    assert_is(ChainHeadAnswer, head)
    assert head["event_id"] == head["head_id"] + 1
    # What an auditor checks with any Ed25519 library: the bytes of docs/security.md.
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex(signer.public)))
    assert head["chain_v2_from"] == 1  # a new database: chain v2 from its first event
    message = (
        f"runtrack chain head v2\n{head['head_id']}\n{head['head_hash']}\n{head['chain_v2_from']}\n"
    ).encode()
    public.verify(bytes.fromhex(head["signature"]), message)  # raises when it does not hold
    assert head["key_id"] == signer.key_id
    for organization in ORGANIZATIONS:
        for role in Role:
            answer = await signed.client(organization, role).get("/v1/audit/head")
            assert answer.json() == head, (organization, role)
    async with signed.server.client() as anonymous:
        assert (await anonymous.get("/v1/audit/head")).status_code == 401


async def test_no_head_before_any_is_signed(server_factory: ServerFactory) -> None:
    server = await server_factory()
    async with server.client() as client:  # open mode: no key needed
        answer = await client.get("/v1/audit/head")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "no_signed_head"
    assert "--signing-key" in answer.json()["error"]["message"]


async def test_the_leader_signs_what_was_appended_and_not_when_idle(
    server_factory: ServerFactory, signer: HeadSigner, tmp_path: Path
) -> None:
    server = await server_factory(
        signing_key=str(tmp_path / "signing.pem"), chain_head_seconds=0.05
    )
    async with server.client() as client:
        created = (await client.post("/v1/runs", json={"agent_id": "a"})).json()
    store: EventStore = server.app.state.store
    head = await _next_head(store, created["last_event_id"])
    assert head.payload["head_id"] == head.id - 1  # the event just before it
    assert head.payload["head_id"] >= created["last_event_id"]
    assert await store.transact(AppendSignedHead(signer)) is None  # nothing new to sign


async def _next_head(store: EventStore, after: int) -> AgentEvent:
    """The first chain_head after ``after``, as the live tail delivers it."""
    async with asyncio.timeout(10):
        async for page in store.subscribe(EventFilter(SYSTEM_ORGANIZATION), after=after):
            for event in page.events:
                if event.event_type == "chain_head":
                    return event
    raise AssertionError("the live tail ended")


async def test_the_servers_verify_checks_every_signature(
    signed: Tenants, signer: HeadSigner, tmp_path: Path
) -> None:
    await some_runs(signed)
    await sign(signed, signer)
    report = await verify(signed)
    assert report["ok"] is True
    assert report["signed_heads"] == 2  # the one at start and this one
    assert report["signed_through"] == (await latest_head(signed))["head_id"]
    assert "kept_heads" not in report
    kept = await latest_head(signed)
    with_kept = await verify(signed, head=f"{kept['head_id']}:{kept['head_hash']}")
    # ID:HASH carries no signature: the kept head is reached, not counted as signed
    assert (with_kept["signed_heads"], with_kept["kept_heads"]) == (2, 1)
    stranger = generate_key_file(tmp_path / "stranger.pem")
    refused = await verify(signed, public_key=public_hex(stranger.public))
    assert refused["ok"] is False
    assert "which is not among the given public keys" in refused["reason"]
    bad = await signed.client("org-a", Role.ADMIN).get("/v1/audit/verify", params={"head": "12:zz"})
    assert bad.status_code == 400
    assert "EVENT_ID:HASH" in bad.json()["error"]["message"]


async def test_a_truncated_tail_with_the_counter_rewound_fails_against_a_kept_head(
    signed: Tenants, signer: HeadSigner
) -> None:
    await some_runs(signed)
    await sign(signed, signer)
    kept = await latest_head(signed)
    cut = kept["head_id"] - 2
    cut_tail(signed.server.app.state.settings.database, cut)
    assert (await verify(signed))["ok"] is True  # the chain left is whole: nothing to see
    report = await verify(signed, head=f"{kept['head_id']}:{kept['head_hash']}")
    assert (report["ok"], report["first_bad_event_id"]) == (False, cut + 1)
    assert f"a kept signed head names event {kept['head_id']}" in report["reason"]


async def test_a_rehashed_chain_fails_at_the_servers_own_signed_head(
    signed: Tenants, signer: HeadSigner
) -> None:
    await some_runs(signed)
    await sign(signed, signer)
    kept = await latest_head(signed)
    database = signed.server.app.state.settings.database
    rehash(database, 5, '{"content":"rewritten","role":"user"}', forge_heads=True)
    report = await verify(signed)
    assert (report["ok"], report["first_bad_event_id"]) == (False, kept["event_id"])
    assert "does not verify" in report["reason"]
    report = await verify(signed, head=f"{kept['head_id']}:{kept['head_hash']}")
    assert report["ok"] is False


async def test_a_head_of_a_key_the_server_does_not_trust_fails_naming_the_option(
    signed: Tenants, signer: HeadSigner, tmp_path: Path
) -> None:
    retired = generate_key_file(tmp_path / "retired.pem")
    await some_runs(signed)
    await sign(signed, retired)  # a key the deployment signed with before this one
    report = await verify(signed)
    assert report["ok"] is False
    assert f"signed by key {retired.key_id}, which is not among" in report["reason"]
    assert "--trusted-public-key" in report["reason"]


async def test_after_a_key_rotation_the_server_trusts_the_keys_it_lists(
    server_factory: ServerFactory, signer: HeadSigner, tmp_path: Path
) -> None:
    retired = generate_key_file(tmp_path / "retired.pem")
    (tmp_path / "retired.pub").write_text(public_hex(retired.public) + "\n")
    server = await server_factory(
        heartbeat_seconds=15.0,
        signing_key=str(tmp_path / "signing.pem"),
        chain_head_seconds=3600.0,
        trusted_public_keys=(str(tmp_path / "retired.pub"),),
    )
    tenants = await Tenants(server).create_keys()
    try:
        await some_runs(tenants)
        await sign(tenants, retired)
        await some_runs(tenants)
        await sign(tenants, signer)
        report = await verify(tenants)
        assert (report["ok"], report["signed_heads"]) == (True, 3), report
        admin = tenants.client("org-a", Role.ADMIN)
        pinned = [public_hex(signer.public), public_hex(retired.public)]
        answer = await admin.get("/v1/audit/verify", params={"public_key": pinned})
        assert (answer.json()["ok"], answer.json()["signed_heads"]) == (True, 3), answer.text
        only_new = await verify(tenants, public_key=public_hex(signer.public))
        assert only_new["ok"] is False  # the caller's keys replace the server's
        assert f"signed by key {retired.key_id}" in only_new["reason"]
        too_many = await admin.get("/v1/audit/verify", params={"public_key": pinned * 9})
        assert too_many.status_code == 400
        assert "public_key" in too_many.json()["error"]["message"]
    finally:
        await tenants.aclose()


async def test_no_key_reaches_the_system_organization(signed: Tenants) -> None:
    with pytest.raises(ValueError, match="the server's own organization"):
        await signed.server.keys.create(SYSTEM_ORGANIZATION, Role.ADMIN)
    database = signed.server.app.state.settings.database
    token = await signed.server.key(Role.ADMIN, "org-a")
    key_id = token.removeprefix("rtk_").partition("_")[0]
    # A key row moved to the system organization behind the server's back is never valid.
    sql(database, f"UPDATE api_keys SET organization_id = '{SYSTEM_ORGANIZATION}' "
                  f"WHERE key_id = '{key_id}'")  # fmt: skip
    signed.server.keys.forget()
    async with signed.server.client(token) as system:
        assert (await system.get("/v1/audit/head")).status_code == 401


async def test_nothing_is_appended_to_the_system_run_through_the_api(signed: Tenants) -> None:
    runs = await some_runs(signed)
    operator = signed.client("org-a", Role.OPERATOR)
    message = {"event_type": "message_created", "payload": {"role": "user", "content": "x"}}
    into_system = await operator.post(f"/v1/runs/{SYSTEM_RUN}/events", json={"events": [message]})
    assert into_system.status_code == 404
    forged = {"event_type": "chain_head", "payload": {"head_id": 1}}
    own = await operator.post(f"/v1/runs/{runs['org-a']}/events", json={"events": [forged]})
    assert own.status_code == 422
    assert "written by the server only" in own.text


async def export(tenants: Tenants, organization: str, **params: str) -> list[dict[str, Any]]:
    admin = tenants.client(organization, Role.ADMIN)
    lines: list[dict[str, Any]] = []
    after = 0
    while True:
        answer = await admin.get("/v1/audit/export", params={"after_event_id": after, **params})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        if not page["items"]:
            return lines
        lines += page["items"]
        after = page["position"]


async def test_an_organizations_export_verifies_as_one_chain(
    signed: Tenants, signer: HeadSigner, tmp_path: Path
) -> None:
    runs = await some_runs(signed)
    await sign(signed, signer)
    lines = await export(signed, "org-a", visibility="internal")
    head = (await signed.client("org-a", Role.USER).get("/readyz")).json()["head_id"]
    assert [line["id"] for line in lines] == list(range(1, head + 1))
    whole = [line for line in lines if not line.get("redacted")]
    assert {line["organization_id"] for line in whole} == {"org-a", SYSTEM_ORGANIZATION}
    assert {line["event_type"] for line in whole if line["organization_id"] != "org-a"} == {
        "chain_head"
    }
    text = json.dumps(lines)
    for foreign in (runs["org-b"], "m-org-b", "org-b"):
        assert foreign not in text
    stub = next(line for line in lines if line.get("redacted"))
    assert set(stub) == {"id", "prev_hash", "hash", "content_hash", "redacted"}
    path = tmp_path / "org-a.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    heads = HeadChecks(PublicKeys([signer.public]))
    report = verify_sources(open_sources([path], None, None), heads)
    assert report.ok, report
    assert report.signed_heads == 2
    # chain v2: org-a's events are proven through org-b's lines, up to the newest head
    assert report.unproven_ranges == ((report.signed_through + 1, head),)
    user_level = await export(signed, "org-a", visibility="user")
    checkpoint = next(line for line in lines if line.get("event_type") == "checkpoint_created")
    assert next(line for line in user_level if line["id"] == checkpoint["id"])["redacted"]


async def test_the_export_refuses_a_bad_visibility(signed: Tenants) -> None:
    answer = await signed.client("org-a", Role.ADMIN).get(
        "/v1/audit/export", params={"visibility": "everything"}
    )
    assert answer.status_code == 400
    assert "visibility" in answer.json()["error"]["message"]


async def test_a_user_key_cannot_export(signed: Tenants) -> None:
    answer = await signed.client("org-a", Role.OPERATOR).get("/v1/audit/export")
    assert answer.status_code == 403
    async with httpx.AsyncClient(base_url=signed.server.url) as anonymous:
        assert (await anonymous.get("/v1/audit/export")).status_code == 401


async def test_the_read_model_rebuilds_to_the_same_tables_with_the_system_run(
    signed: Tenants, signer: HeadSigner
) -> None:
    await some_runs(signed)
    await sign(signed, signer)
    store = store_of(signed)
    rows = await store.fetchall(
        "SELECT status FROM runs WHERE organization_id = ?", (SYSTEM_ORGANIZATION,)
    )
    assert rows == [("completed",)]  # ended: no worker claims it, no timeout touches it
    assert (await check(store)).differences == []


def test_a_trusted_key_the_server_cannot_read_stops_it_starting(tmp_path: Path) -> None:
    missing = str(tmp_path / "retired.pub")
    with pytest.raises(ValueError, match="--trusted-public-key: a public key is 64 hex digits"):
        check_settings(Settings(trusted_public_keys=(missing,)))
