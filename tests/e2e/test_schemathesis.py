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


@pytest.mark.timeout(360)
async def test_no_input_causes_a_server_error_and_every_answer_fits_the_schema(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    """As an admin, no input may cause a 5xx; then every check (status codes, schemas,
    headers) as a user of org-a, and as an operator of org-b, whose key sees none of org-a's
    runs. The three runs go side by side (each in its own folder, for schemathesis' files)."""
    fuzz_database = str(tmp_path / "fuzz.db")
    admin = await create_key(fuzz_database, "admin")
    schema_database = str(tmp_path / "schema.db")
    user = await create_key(schema_database, "user", organization="org-a")
    operator = await create_key(schema_database, "operator", organization="org-b")
    # a claim waits at most 1 s: under the fuzzer's request timeout, whatever wait it sends
    fuzzed = await server_process("--max-claim-wait", "1", database=fuzz_database)
    checked = await server_process("--max-claim-wait", "1", database=schema_database)
    folders = [tmp_path / name for name in ("admin", "user", "operator")]
    for folder in folders:
        folder.mkdir()
    reports = await asyncio.gather(
        fuzz(fuzzed.url, admin, folders[0], "not_a_server_error"),
        fuzz(checked.url, user, folders[1]),
        fuzz(checked.url, operator, folders[2]),
    )
    assert "Authentication failed" not in reports[0]
