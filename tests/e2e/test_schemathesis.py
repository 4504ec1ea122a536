"""schemathesis fuzzes every operation of ``/openapi.json``: no input may cause a 5xx."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from .conftest import ProcessFactory, create_key

pytestmark = pytest.mark.anyio


async def run(*command: str, cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")


def schemathesis() -> str:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (it is a test extra: make test installs it)")
    return st


async def fuzz(url: str, key: str, cwd: Path, *checks: str) -> str:
    code, report = await run(
        schemathesis(),
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(checks) or "all",
        "--max-examples",
        "25",
        "--seed",
        "7",
        "--request-timeout",
        "5",
        "--exclude-path-regex",
        "agent-events",  # endless SSE streams: tested in test_sse.py
        "-H",
        f"Authorization: Bearer {key.strip()}",
        cwd=cwd,
    )
    assert code == 0, report
    return report


async def test_fuzzing_the_openapi_document_finds_no_server_error(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    database = str(tmp_path / "fuzz.db")
    key = await create_key(database, "admin")
    server = await server_process(database=database)
    report = await fuzz(server.url, key, tmp_path, "not_a_server_error")
    assert "Authentication failed" not in report


@pytest.mark.parametrize(
    ("role", "organization"), [("user", "org-a"), ("operator", "org-b")], ids=["user", "operator"]
)
async def test_the_server_and_its_schema_agree_for_a_user_and_a_foreign_operator(
    server_process: ProcessFactory, tmp_path: Path, role: str, organization: str
) -> None:
    """Every check (status codes, schemas, headers), as a user of org-a, and as an operator of
    org-b, whose key sees none of org-a's runs: no 5xx, no answer the schema does not allow.

    One run per key, so each has the whole test timeout to itself."""
    database = str(tmp_path / "schema.db")
    user = await create_key(database, "user", organization="org-a")
    operator = await create_key(database, "operator", organization="org-b")
    server = await server_process(database=database)
    await fuzz(server.url, user if role == "user" else operator, tmp_path)
