"""Every worker program in docs/workers.md runs: against a real server, as a real process.

Each ```` ```python worker ```` block is written to a file and started with ``RUNTRACK_URL``
set; the test creates a run for each agent the block serves, answers each question the run
asks with ``runtrack answer`` (a question is how a run waits), checks that the run completed,
and stops the program with SIGTERM, which must drain and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from api.client import RuntrackClient
from tests.e2e.conftest import ServerProcess, run_cli

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python worker\n(.*?)```", re.DOTALL)
SNIPPETS = BLOCK.findall((ROOT / "docs" / "workers.md").read_text())
AGENT = re.compile(r"""\.handler\(["']([\w-]+)["']\)""")


def test_the_page_has_its_programs() -> None:
    assert len(SNIPPETS) >= 5
    assert all(AGENT.findall(code) for code in SNIPPETS)


async def until_settled(client: RuntrackClient, run_id: str, after: int) -> tuple[str, int]:
    """The run's status once it ended or waits for a human (followed on its stream from
    ``after``), and the event id to follow on from."""
    async for event in client.stream(run_id=run_id, after=after):
        if event.event_type == "run_status_changed" and event.payload["to"] == "waiting_on_human":
            return "waiting_on_human", event.id
    return (await client.get_run(run_id)).status, 0


@pytest.mark.parametrize("code", SNIPPETS, ids=[AGENT.findall(c)[0] for c in SNIPPETS])
async def test_a_worker_program_of_the_guide_runs_its_runs_to_the_end(
    server: ServerProcess, client: RuntrackClient, tmp_path: Path, code: str
) -> None:
    program = tmp_path / "program.py"
    program.write_text(code)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(program),
        env={**os.environ, "RUNTRACK_URL": server.url, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    try:
        for agent in AGENT.findall(code):
            run = await client.create_run(agent, message="hello")
            status, seen = await until_settled(client, run.id, 0)
            while status == "waiting_on_human":
                code_, _, err = await run_cli(server, "answer", run.id, "yes")
                assert code_ == 0, err
                status, seen = await until_settled(client, run.id, seen)
            assert status == "completed", await client.get_run(run.id)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
