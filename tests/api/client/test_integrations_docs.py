"""Every program in docs/integrations.md runs: as a process, against a real server, and the
run it recorded is the one the framework reported (completed, its steps and its tool)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.client import RuntrackClient
from api.server.settings import Settings
from tests.api.conftest import LiveServer, start_server

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"```python program\n(.*?)```", re.DOTALL)
PROGRAMS = BLOCK.findall((ROOT / "docs" / "integrations.md").read_text())


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    server = await start_server(Settings(database=str(tmp_path / "docs.db")))
    yield server
    await server.stop()


def test_the_page_has_a_program_for_each_adapter() -> None:
    imported = [re.findall(r"from api\.client\.adapters\.(\w+) import", p) for p in PROGRAMS]
    assert imported == [["langchain"], ["openai_agents"]]


@pytest.mark.parametrize("code", PROGRAMS, ids=["langchain", "openai_agents"])
async def test_a_program_of_the_page_records_its_run(
    live: LiveServer, tmp_path: Path, code: str
) -> None:
    program = tmp_path / "program.py"
    program.write_text(code)
    environment = {
        **os.environ,
        "RUNTRACK_URL": live.url,
        "PYTHONPATH": str(ROOT),
        "OPENAI_API_KEY": "sk-not-used",  # nothing reaches OpenAI: the models are scripted
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(program), env=environment, cwd=tmp_path
    )
    try:
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    async with RuntrackClient(live.url) as client:
        (run,), _ = await client.list_runs()
    assert run.agent_id in code
    assert (run.status, run.num_steps, len(run.tools_used)) == ("completed", 2, 1)
