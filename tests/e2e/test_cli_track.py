"""``runtrack track``'s live view (tmux), its one-line-per-change format in a pipe, and
``events tail -n`` (issue 18), as subprocesses against a live server."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from typing import Any

import httpx
import pytest

from .conftest import ProcessFactory, ServerProcess, run_cli
from .test_cli import finish, sent_run
from .test_cli_results import append, open_streams
from .test_cli_watch import screen_shows, tmux

pytestmark = pytest.mark.anyio


async def claim(server: ServerProcess, run_id: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        body = {"worker_id": "w", "lane_key": run["lane_key"]}
        assert (await client.post("/v1/runs/claim", json=body)).status_code == 200


async def end(server: ServerProcess, run_id: str, stop_reason: str) -> None:
    said = {"event_type": "message_created", "payload": {"role": "assistant", "content": "bye"}}
    ends = {"event_type": "run_status_changed", "payload": {"stop_reason": stop_reason}}
    await append(server, run_id, said, ends)


async def test_track_shows_a_live_table_and_each_runs_messages_as_it_ends(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    first, second = await sent_run(server), await sent_run(server)
    socket = f"runtrack-{uuid.uuid4().hex[:8]}"
    command = f"env -u COLUMNS -u LINES {sys.executable} -m api --url {server.url} track"
    command += f" {first} {second}; sleep 600"  # the pane stays to be read after the exit
    await tmux(socket, "new-session", "-d", "-s", "watch", "-x", "200", "-y", "40", command)
    try:
        await screen_shows(socket, "status", "elapsed", "stop reason", first, second, "queued")
        await finish(server, first)
        screen = await screen_shows(socket, f"done {first[-4:]}")
        assert f"done {second[-4:]}" not in screen  # the second run's messages: not yet
        await claim(server, second)
        screen = await screen_shows(socket, "running")
        row = next(line for line in screen.splitlines() if second in line and "running" in line)
        assert re.search(r"running\W+\d+\.\ds\W+\d+\.\ds", row), row  # queued, then elapsed
        await end(server, second, "error")
        screen = await screen_shows(socket, "bye", "1 completed, 1 not completed (failed 1)")
        assert screen.index(f"done {first[-4:]}") < screen.index("bye")
    finally:
        await tmux(socket, "kill-server")


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line, "the tracker ended early"
    return line.decode().rstrip("\n")


async def test_track_in_a_pipe_prints_one_line_per_change(server_process: ProcessFactory) -> None:
    server = await server_process()
    first, second = await sent_run(server), await sent_run(server)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", "--url", server.url, "track", first, second),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert {await _line(process), await _line(process)} == {
            f"{first}\tqueued\t-",
            f"{second}\tqueued\t-",
        }
        await open_streams(server, 2)
        await finish(server, first)
        shown = await _line(process)
        if shown == f"{first}\trunning\t-":  # seen if the tracker read the run in between
            shown = await _line(process)
        assert shown == f"{first}\tcompleted\tend_turn"
        assert await _line(process) == "  user: hello"
        assert await _line(process) == f"  assistant: done {first[-4:]}"
        assert process.returncode is None  # shown while the other run still works
        await claim(server, second)
        assert await _line(process) == f"{second}\trunning\t-"
        code, out, _ = await run_cli(server, "--no-ux", "get", "runs", "--status", "running")
        assert code == 0
        assert re.fullmatch(r"\d+\.\ds", out.split("\t")[3])  # elapsed of a live run
        await end(server, second, "error")
        rest = [await _line(process) for _ in range(4)]
        assert rest == [
            f"{second}\tfailed\terror",
            "  user: hello",
            "  assistant: bye",
            "1 completed, 1 not completed (failed 1)",
        ]
        assert await process.wait() == 1
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _events(server: ServerProcess, *args: str) -> list[dict[str, Any]]:
    code, out, err = await run_cli(server, "events", "tail", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


async def test_events_tail_n_prints_the_last_events(server_process: ProcessFactory) -> None:
    server = await server_process()
    runs = [await sent_run(server, f"m{i}") for i in range(3)]
    everything = await _events(server)
    assert len(everything) > 3
    assert [e["id"] for e in await _events(server, "-n", "3")] == [e["id"] for e in everything[-3:]]
    assert await _events(server, "-n", "0") == []
    mine = [e["id"] for e in everything if e["run_id"] == runs[0]]
    assert [e["id"] for e in await _events(server, "--run", runs[0], "-n", "1")] == mine[-1:]


async def test_events_tail_follow_from_the_head(server_process: ProcessFactory) -> None:
    server = await server_process()
    await sent_run(server, "old")
    newest = (await _events(server))[-1]["id"]
    for args, old in ((("-n", "0"), 0), (("-n", "1"), 1)):
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "api", "--url", server.url, "events", "tail", "-f", *args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            if old:
                assert json.loads(await _line(process))["id"] == newest
            await open_streams(server, 1)
            run_id = await sent_run(server, "new")
            shown = json.loads(await _line(process))
            assert (shown["run_id"], shown["id"] > newest) == (run_id, True)
            newest = (await _events(server))[-1]["id"]
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
