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


async def test_fuzzing_the_openapi_document_finds_no_server_error(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.skip("schemathesis is not installed (it is a test extra: make test installs it)")
    database = str(tmp_path / "fuzz.db")
    key = await create_key(database, "admin")
    server = await server_process(database=database)
    code, report = await run(
        st,
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "not_a_server_error",
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
        cwd=tmp_path,
    )
    assert code == 0, report
    assert "Authentication failed" not in report
