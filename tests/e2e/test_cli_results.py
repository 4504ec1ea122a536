"""``runtrack`` verbs that gave wrong results (issue 18), as subprocesses against a live server."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import pytest

from .conftest import ProcessFactory, ServerProcess, run_cli
from .test_cli import finish, sent_run

pytestmark = pytest.mark.anyio

cli = run_cli


def said(text: str) -> str:
    """An error message with rich's box and line wrapping taken out."""
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


async def append(server: ServerProcess, run_id: str, *events: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events)})
        assert answer.status_code == 201


async def open_streams(server: ServerProcess, count: int) -> None:
    """Return once the server holds ``count`` open SSE streams (a gauge no event announces)."""

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=server.url) as client:
            while True:
                text = (await client.get("/metrics")).text
                gauge = [line for line in text.splitlines() if line.startswith("runtrack_open_")]
                if gauge and float(gauge[0].split()[-1]) >= count:
                    return

    await asyncio.wait_for(poll(), 10)


async def waiting_on_human(server: ServerProcess) -> str:
    """A run claimed by a worker that now waits on a person."""
    run_id = await sent_run(server)
    async with httpx.AsyncClient(base_url=server.url) as client:
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    waits = {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}}
    await append(server, run_id, waits)
    return run_id


async def test_track_agent_follows_queued_and_waiting_runs_until_its_timeout(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    ended = await sent_run(server)
    await finish(server, ended)
    asking = await waiting_on_human(server)
    queued = await sent_run(server)
    code, out, err = await cli(server, "track", "--agent", "agent-1", "--timeout", "0.5")
    assert code == 2
    assert f"still open: {asking} (waiting_on_human), {queued} (queued)" in err
    assert ended not in out + err  # it had ended: not tracked
    assert "0 completed, 0 not completed, 2 still open" in out


async def test_track_agent_waits_for_runs_no_worker_has_claimed(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    run_ids = [await sent_run(server) for _ in range(3)]  # queued: no worker claimed them
    code, out, err = await cli(server, "track", "--agent", "agent-1", "--timeout", "0")
    assert code == 2
    assert all(f"{run_id} (queued)" in err for run_id in run_ids)
    tracking = asyncio.ensure_future(cli(server, "track", "--agent", "agent-1", "-o", "json"))
    await open_streams(server, 3)  # the tracker follows each run's channel
    for run_id, ending in zip(run_ids, ["end_turn", "error", "end_turn"], strict=True):
        await finish(server, run_id, ending)
    code, out, _ = await tracking
    assert code == 1
    tracked = [(entry["run"]["id"], entry["run"]["status"]) for entry in json.loads(out)]
    assert tracked == list(zip(run_ids, ["completed", "failed", "completed"], strict=True))


@pytest.mark.parametrize("agent", ["nobody", "agent-1"])
async def test_track_agent_without_open_runs_is_an_error(
    server_process: ProcessFactory, agent: str
) -> None:
    server = await server_process()
    await finish(server, await sent_run(server))  # agent-1 has only an ended run
    code, out, err = await cli(server, "track", "--agent", agent)
    assert code == 2
    assert f"no run of agent '{agent}' found that has not ended" in err
    assert "completed" not in out


async def test_events_tail_without_follow_keeps_its_filters(server_process: ProcessFactory) -> None:
    server = await server_process()
    first, second = await sent_run(server, "one"), await sent_run(server, "two")
    operator_step = {"event_type": "step_completed", "payload": {}, "visibility": "operator"}
    async with httpx.AsyncClient(base_url=server.url) as client:
        run = (await client.get(f"/v1/runs/{second}")).json()
        await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    await append(server, second, operator_step)

    async def tail(*args: str) -> list[dict[str, Any]]:
        code, out, _ = await cli(server, "events", "tail", *args)
        assert code == 0
        return [json.loads(line) for line in out.splitlines()]

    everything = await tail()
    assert {event["run_id"] for event in everything} == {first, second}
    assert {event["run_id"] for event in await tail("--run", first)} == {first}
    conversation = run["conversation_id"]
    in_conversation = await tail("--conversation", conversation)
    assert in_conversation
    assert {event["conversation_id"] for event in in_conversation} == {conversation}
    assert len(in_conversation) < len(everything)
    shown = await tail("--visibility", "user")
    assert "operator" in {event["visibility"] for event in everything}
    assert {event["visibility"] for event in shown} == {"user"}
    assert [e["id"] for e in await tail("--run", second, "--visibility", "user")] == [
        e["id"] for e in shown if e["run_id"] == second
    ]


async def test_events_tail_refuses_an_unknown_visibility(server_process: ProcessFactory) -> None:
    server = await server_process()
    for args in (["tail", "--visibility", "bogus"], ["tail", "-f", "--visibility", "bogus"]):
        code, out, err = await cli(server, "events", *args)
        assert (code, out) == (2, "")
        assert "'bogus' is not one of 'user', 'operator', 'internal'" in said(err)


async def test_get_run_json_is_the_object_and_only_json(server_process: ProcessFactory) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    code, out, _ = await cli(server, "get", "run", run_id, "-o", "json")
    assert code == 0
    assert json.loads(out)["id"] == run_id
    code, out, _ = await cli(server, "get", "run", run_id, "--messages", "-o", "json")
    assert code == 0
    shown = json.loads(out)  # the whole output: no plain text after the JSON
    assert shown["run"]["id"] == run_id
    assert [(m["role"], m["content"]) for m in shown["messages"]] == [("user", "hello")]


@pytest.mark.parametrize("verb", [["get", "run", "run-x"], ["get", "runs"], ["track", "run-x"]])
@pytest.mark.parametrize("output", ["yaml", "JSON"])
async def test_unknown_output_formats_are_refused(
    server_process: ProcessFactory, verb: list[str], output: str
) -> None:
    server = await server_process()
    code, out, err = await cli(server, *verb, "-o", output)
    assert (code, out) == (2, "")
    assert f"'{output}' is not one of 'table', 'json'" in said(err)


@pytest.mark.parametrize(
    ("ending", "expected"),
    [("end_turn", 0), ("error", 1), ("cancelled", 1)],
)
async def test_get_run_wait_exits_as_track_does(
    server_process: ProcessFactory, ending: str, expected: int
) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    await finish(server, run_id, ending)
    code, out, _ = await cli(server, "--no-ux", "get", "run", run_id, "--wait")
    assert code == expected
    assert out.startswith(f"{run_id}\tagent-1\t")
    assert (await cli(server, "get", "run", run_id))[0] == 0  # no --wait: showing is success


async def test_send_says_why_a_run_did_not_complete(server_process: ProcessFactory) -> None:
    server = await server_process()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", "--url", server.url, "send", "agent-1", "hi"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    first = (await process.stdout.readline()).decode()
    run_id = first.split("Run ID: ")[1].strip()
    failure = {"stop_reason": "error", "detail": "the model timed out"}
    async with httpx.AsyncClient(base_url=server.url) as client:
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    await append(server, run_id, {"event_type": "run_status_changed", "payload": failure})
    _, err = await process.communicate()
    assert process.returncode == 1
    assert (
        f"error: run {run_id} failed: stop reason error, error the model timed out" in err.decode()
    )


async def test_get_run_wait_exits_1_for_a_run_that_timed_out(
    server_process: ProcessFactory,
) -> None:
    """No heartbeat after the claim: the reconciler ends the run timed_out while --wait waits."""
    server = await server_process(
        *("--heartbeat-timeout", "0.5", "--reconcile-seconds", "0.2", "--leader-interval", "0.1")
    )
    run_id = await sent_run(server)
    async with httpx.AsyncClient(base_url=server.url) as client:
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    code, out, _ = await cli(server, "--no-ux", "get", "run", run_id, "--wait")
    assert code == 1
    assert out.startswith(f"{run_id}\tagent-1\ttimed_out")
