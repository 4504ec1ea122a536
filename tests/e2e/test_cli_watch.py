"""``runtrack get runs --watch`` in a real terminal (tmux): it redraws as runs change."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid

import httpx
import pytest

from .conftest import ProcessFactory

pytestmark = pytest.mark.anyio


def tmux_path() -> str:
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have tmux: the Makefile installs Debian's tmux package")
        pytest.skip("no tmux on this machine: run 'make system-deps'")
    return found


async def tmux(socket: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        tmux_path(),
        "-L",
        socket,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def screen_shows(socket: str, *texts: str, within: float = 20) -> str:
    async def poll() -> str:
        while True:  # the terminal has no events to await: read it until it shows the text
            _, screen = await tmux(socket, "capture-pane", "-p", "-t", "watch")
            if all(text in screen for text in texts):
                return screen
            await asyncio.sleep(0.1)

    try:
        return await asyncio.wait_for(poll(), within)
    except TimeoutError:
        _, screen = await tmux(socket, "capture-pane", "-p", "-t", "watch")
        raise AssertionError(f"the terminal never showed {texts}:\n{screen}") from None


async def test_the_watch_view_updates_live_and_leaves_on_ctrl_c(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    socket = f"runtrack-{uuid.uuid4().hex[:8]}"
    # the terminal's own width, not the COLUMNS the test runner exports
    command = f"env -u COLUMNS -u LINES {sys.executable} -m api --url {server.url} get runs --watch"
    await tmux(socket, "new-session", "-d", "-s", "watch", "-x", "200", "-y", "40", command)
    try:
        await screen_shows(socket, "status", "agent id")
        async with httpx.AsyncClient(base_url=server.url) as client:
            run = (await client.post("/v1/runs", json={"agent_id": "watched-agent"})).json()
            await screen_shows(socket, run["id"], "queued")
            await client.post("/v1/runs/claim", json={"worker_id": "w"})
            end = {
                "events": [
                    {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}
                ]
            }
            await client.post(f"/v1/runs/{run['id']}/events", json=end)
            screen = await screen_shows(socket, run["id"], "completed", "end_turn")
        assert "watched-agent" in screen
        await tmux(socket, "send-keys", "-t", "watch", "C-c")

        async def session_ends() -> None:
            while (await tmux(socket, "has-session", "-t", "watch"))[0] == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # another process: nothing to await but its state

        await asyncio.wait_for(session_ends(), 10)  # Ctrl+C leaves the view (and the shell)
    finally:
        await tmux(socket, "kill-server")
