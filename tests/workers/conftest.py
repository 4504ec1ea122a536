"""Real servers and real worker processes (``tests/workers/worker_process.py``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from api.client import RuntrackClient, StoredEvent
from tests.e2e.conftest import ProcessFactory, ServerProcess, server_process
from tests.workers.worker_process import HANGING

__all__ = ["server_process"]

FAST_RECONCILER = (
    *("--heartbeat-timeout", "2", "--reconcile-seconds", "0.2"),
    *("--max-claim-wait", "0.5"),
)
"""A killed worker's run times out within seconds, and a draining worker's claim in flight
ends within half a second (a claim waits server-side up to ``--max-claim-wait``)."""

WorkerFactory = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def server(server_process: ProcessFactory) -> ServerProcess:
    return await server_process(*FAST_RECONCILER)


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[RuntrackClient]:
    async with RuntrackClient(server.url) as client:
        yield client


@pytest.fixture
async def workers(server: ServerProcess, tmp_path: Path) -> AsyncIterator[WorkerFactory]:
    started: list[asyncio.subprocess.Process] = []

    async def start(scenario: str, *args: str, hang: bool = False) -> asyncio.subprocess.Process:
        env = {**os.environ, "HANG": "1" if hang else "0", "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.workers.worker_process"),
            *(server.url, scenario, str(tmp_path), *args),
            env=env,
            stdout=asyncio.subprocess.PIPE if hang else None,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()


async def hanging(process: asyncio.subprocess.Process) -> None:
    """Returns once a worker started with ``hang=True`` has recorded its call and hangs in it."""
    assert process.stdout is not None, "start the worker with hang=True"
    while line := await process.stdout.readline():
        if line.decode().strip() == HANGING:
            return
    raise AssertionError("the worker exited before it hung in its tool call")


async def first_event(
    client: RuntrackClient, run_id: str, matches: Callable[[StoredEvent], bool]
) -> StoredEvent:
    """The first event of the run that ``matches``, waiting for it on the run's stream."""
    async for event in client.stream(run_id=run_id, visibility="internal"):
        if matches(event):
            return event
    raise AssertionError(f"run {run_id} ended without the event")


def lines(folder: Path, name: str) -> list[str]:
    path = folder / name
    return path.read_text().splitlines() if path.exists() else []


async def run_events(client: RuntrackClient, run_id: str) -> list[StoredEvent]:
    """Every event of the run (it has ended, so its stream ends)."""
    return [event async for event in client.stream(run_id=run_id, visibility="internal")]
