"""An auditor's round with the real command: ``audit keygen``, ``serve --signing-key``, ``events
export``, ``audit verify`` through the server and offline, then a tampered log caught."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventstore import generate_key_file, public_hex
from tests.eventstore.audit_files import cut_tail

from .conftest import ProcessFactory, create_key

pytestmark = pytest.mark.anyio


async def runtrack(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def signed_past(client: httpx.AsyncClient, event_id: int) -> dict[str, Any]:
    """The published head once it covers ``event_id`` (the leader signs every 50 ms)."""
    async with asyncio.timeout(20):
        while True:
            answer = await client.get("/v1/audit/head")
            if answer.status_code == 200 and answer.json()["head_id"] >= event_id:
                head: dict[str, Any] = answer.json()
                return head
            await asyncio.sleep(0.02)  # the condition is on the server: polled, not slept on


def report(out: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(out)
    return found


async def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    key = tmp_path / "signing.pem"
    code, out, err = await runtrack("audit", "keygen", "--out", str(key))
    assert code == 0, err
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "signing.pem.pub").read_text() == out
    assert len(out.strip()) == 64
    assert "key id" in err
    again = await runtrack("audit", "keygen", "--out", str(key))
    assert again[0] == 2
    assert "never overwritten" in again[2]


async def test_no_key_is_created_for_the_system_organization(tmp_path: Path) -> None:
    code, out, err = await runtrack(
        "keys", "create", "--role", "admin", "--organization", "runtrack-system",
        "--database", str(tmp_path / "keys.db"),
    )  # fmt: skip
    assert code == 2
    assert "the server's own organization" in err
    assert "rtk_" not in out


async def test_an_auditor_catches_a_truncated_tail_with_a_kept_head(
    server_process: ProcessFactory, database_url: str, tmp_path: Path
) -> None:
    key, public = tmp_path / "signing.pem", tmp_path / "signing.pem.pub"
    assert (await runtrack("audit", "keygen", "--out", str(key)))[0] == 0
    admin = await create_key(database_url, "admin", "org-a")
    other = await create_key(database_url, "operator", "org-b")
    server = await server_process(
        "--signing-key", str(key), "--chain-head-seconds", "0.05", database=database_url
    )
    async with httpx.AsyncClient(base_url=server.url) as client:
        for token in (admin, other, admin):
            created = await client.post(
                "/v1/runs",
                json={"agent_id": "a", "message": "hello"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert created.status_code == 201
        client.headers["Authorization"] = f"Bearer {admin}"
        kept = await signed_past(client, created.json()["last_event_id"])
    head_file = tmp_path / "head.json"
    head_file.write_text(json.dumps(kept))
    connect = ("--url", server.url, "--key", admin)

    code, out, err = await runtrack("events", "export", "--visibility", "internal", *connect)
    assert code == 0, err
    export = tmp_path / "export.jsonl"
    export.write_text(out)
    stubs = [json.loads(line) for line in out.splitlines() if '"redacted"' in line]
    assert stubs  # org-b's
    assert all(len(stub["content_hash"]) == 64 for stub in stubs)  # chain v2: links checked
    retired = public_hex(generate_key_file(tmp_path / "retired.pem").public)
    # every key goes to the server, not the first only
    keys = ("--public-key", retired, "--public-key", str(public))
    audit = ("audit", "verify", "--head", str(head_file), *keys)
    code, out, err = await runtrack(*audit, *connect)
    assert code == 0, err
    assert report(out)["ok"] is True
    assert report(out)["signed_heads"] >= 1
    code, out, err = await runtrack(*audit, "--file", str(export))
    assert code == 0, out + err
    assert report(out)["redacted"] >= 2
    assert report(out)["unproven"] >= 1  # the newest head's own event, at least
    assert report(out)["unproven_ranges"][-1][1] == report(out)["head_id"]
    # org-a's own events are proven up to the newest signed head, through org-b's lines
    assert report(out)["unproven_ranges"][0][0] > report(out)["signed_through"] >= kept["head_id"]

    await server.stop()
    cut = kept["head_id"] - 2
    cut_tail(database_url, cut)
    if not database_url.startswith("postgresql"):
        code, out, _ = await runtrack(*audit, "--sqlite", database_url)
        assert code == 1
        assert report(out)["first_bad_event_id"] == cut + 1
    auditor_server = await server_process(database=database_url)  # it signs nothing
    code, out, _ = await runtrack(*audit, "--url", auditor_server.url, "--key", admin)
    assert code == 1
    assert report(out)["first_bad_event_id"] == cut + 1
    assert f"a kept signed head names event {kept['head_id']}" in report(out)["reason"]


async def test_a_changed_export_line_is_named(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    key, public = tmp_path / "signing.pem", tmp_path / "signing.pem.pub"
    assert (await runtrack("audit", "keygen", "--out", str(key)))[0] == 0
    server = await server_process("--signing-key", str(key), "--chain-head-seconds", "0.05")
    async with httpx.AsyncClient(base_url=server.url) as client:
        created = await client.post("/v1/runs", json={"agent_id": "a", "message": "the truth"})
        await signed_past(client, created.json()["last_event_id"])
    code, later, _ = await runtrack("events", "export", "--after", "2", "--url", server.url)
    assert code == 0
    (tmp_path / "later.jsonl").write_text(later)
    offline = ("audit", "verify", "--file", str(tmp_path / "later.jsonl"))
    code, out, _ = await runtrack(*offline)
    assert (code, report(out)["first_bad_event_id"]) == (1, 1)
    assert "the start of the log was removed" in report(out)["reason"]
    code, out, _ = await runtrack(*offline, "--after", "2")
    assert (code, report(out)["first_id"]) == (0, 3)
    code, out, _ = await runtrack("events", "export", "--url", server.url)
    assert code == 0
    export = tmp_path / "export.jsonl"
    export.write_text(out.replace("the truth", "a lie"))
    changed = next(json.loads(line)["id"] for line in out.splitlines() if "the truth" in line)
    code, out, err = await runtrack(
        "audit", "verify", "--file", str(export), "--public-key", str(public)
    )
    assert code == 1, err
    assert report(out)["first_bad_event_id"] == changed
    assert report(out)["reason"] == (
        "hash does not match the event's content: the event was modified"
    )
    assert report(out)["source"] == str(export)
