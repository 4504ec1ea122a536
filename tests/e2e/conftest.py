"""``runtrack serve`` as a real process, for signals, restarts and several servers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from .browser import chromium


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    database: str
    port: int
    args: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ServerProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "api",
            "serve",
            "--database",
            self.database,
            "--port",
            str(self.port),
            *self.args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        await self._wait_ready()
        return self

    async def _wait_ready(self) -> None:
        async with httpx.AsyncClient(base_url=self.url) as client:
            for _ in range(500):
                assert self.process is not None
                if self.process.returncode is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
        raise RuntimeError("server did not become ready")

    async def signal(self, signum: int) -> str:
        """Send a signal, wait for the exit, and return what the server logged."""
        assert self.process is not None
        assert self.process.stderr is not None
        self.process.send_signal(signum)
        log = await asyncio.wait_for(self.process.stderr.read(), 30)
        await self.process.wait()
        return log.decode(errors="replace")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.signal(signal.SIGKILL)


ProcessFactory = Callable[..., Awaitable[ServerProcess]]


async def create_key(database: str, role: str, organization: str = "default") -> str:
    """``runtrack keys create`` on ``database`` as a subprocess; the printed token."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", "keys", "create", "--role", role),
        *("--organization", organization),
        *("--database", database),
        stdout=asyncio.subprocess.PIPE,
    )
    token = (await process.communicate())[0].decode().strip()
    assert process.returncode == 0
    assert token.startswith("rtk_"), token
    return token


async def run_cli(server: ServerProcess, *args: str) -> tuple[int, str, str]:
    """``runtrack --url <server> ARGS`` as a subprocess: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api",
        "--url",
        server.url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def server_process(tmp_path: Path) -> AsyncIterator[ProcessFactory]:
    started: list[ServerProcess] = []

    async def start(
        *args: str, database: str | None = None, port: int | None = None
    ) -> ServerProcess:
        process = ServerProcess(
            database or str(tmp_path / "e2e.db"), port or free_port(), list(args)
        )
        started.append(process)
        return await process.start()

    yield start
    for process in started:
        await process.stop()


@pytest.fixture(scope="module")
async def chromium_browser() -> AsyncIterator[Browser]:
    """One Chromium for a whole module (which sets a module-wide ``anyio_backend``): a launch
    cost more than most browser tests; tests take it through ``browser.fresh_contexts``."""
    async with chromium() as browser:
        yield browser
