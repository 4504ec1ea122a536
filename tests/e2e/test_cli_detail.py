"""``runtrack get run ID``'s detail view and ``runtrack debug conversation`` (issue 18), as
subprocesses against a live server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from .conftest import ProcessFactory, ServerProcess, run_cli
from .test_cli import sent_run

pytestmark = pytest.mark.anyio

cli = run_cli


async def worked_run(server: ServerProcess, conversation: str | None = None) -> dict[str, str]:
    """A claimed run that used a tool, took tokens, checkpointed, planned and started a child."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        body: dict[str, Any] = {"agent_id": "agent-1", "message": "hello"}
        if conversation is not None:
            body["conversation_id"] = conversation
        run = (await client.post("/v1/runs", json=body)).json()
        child = {"agent_id": "agent-2", "parent_run_id": run["id"], "message": "sub-task"}
        child_run = (await client.post("/v1/runs", json=child)).json()
        claim = {"worker_id": "w", "lane_key": run["lane_key"]}
        assert (await client.post("/v1/runs/claim", json=claim)).status_code == 200
        call = {"tool_call_id": "call-1", "name": "search"}
        events = [
            {
                "event_type": "step_completed",
                "payload": {"prompt_tokens": 10, "completion_tokens": 5},
            },
            {"event_type": "tool_started", "payload": {**call, "arguments": {"q": "x"}}},
            {"event_type": "tool_finished", "payload": {**call, "result": {"hits": 3}}},
            {
                "event_type": "checkpoint_created",
                "payload": {"checkpoint_id": "cp-1", "kind": "tool_result"},
            },
            {"event_type": "journal_updated", "payload": {"next_action": "write the summary"}},
            {"event_type": "child_run_started", "payload": {"child_run_id": child_run["id"]}},
        ]
        answer = await client.post(f"/v1/runs/{run['id']}/events", json={"events": events})
        assert answer.status_code == 201, answer.text
    return {"run": run["id"], "child": child_run["id"], "conversation": run["conversation_id"]}


async def end(server: ServerProcess, run_id: str, stop_reason: str, detail: str) -> None:
    change = {
        "event_type": "run_status_changed",
        "payload": {"stop_reason": stop_reason, "detail": detail},
    }
    async with httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.post(f"/v1/runs/{run_id}/events", json={"events": [change]})
        assert answer.status_code == 201, answer.text


def fields(out: str) -> dict[str, list[str]]:
    """The ``label: value`` lines below the run's row, by label."""
    found: dict[str, list[str]] = {}
    for line in out.splitlines()[1:]:
        label, _, value = line.partition(": ")
        found.setdefault(label, []).append(value)
    return found


async def test_get_run_shows_the_detail_view(server_process: ProcessFactory) -> None:
    server = await server_process()
    ids = await worked_run(server)
    code, out, _ = await cli(server, "--no-ux", "get", "run", ids["run"])
    assert code == 0
    assert out.startswith(f"{ids['run']}\tagent-1\trunning\t")  # the row stays first
    shown = fields(out)
    assert shown["status"] == ["running"]
    assert shown["agent"] == ["agent-1"]
    assert shown["conversation"] == [ids["conversation"]]
    assert shown["lane"] == ["conversation:" + ids["conversation"]]
    assert {"running for", "queued for"} <= shown.keys()  # live: no total duration yet
    assert not {"duration", "ended"} & shown.keys()
    assert shown["tokens"] == ["15 (10 prompt, 5 completion)"]
    assert shown["tools"] == ["search"]
    assert shown["child"] == [f"{ids['child']} agent-2 queued -"]
    assert shown["checkpoint"] == ["cp-1 (tool_result)"]
    assert shown["next action"] == ["write the summary"]
    assert "resume available" in shown

    await end(server, ids["run"], "error", "the model timed out")
    code, out, _ = await cli(server, "--no-ux", "get", "run", ids["run"])
    assert code == 0
    shown = fields(out)
    assert shown["status"] == ["failed"]
    assert shown["stop reason"] == ["error"]
    assert shown["error"] == ["the model timed out"]
    assert shown["resume available"] == ["yes"]  # failed with a checkpoint
    assert {"ended", "duration", "queued for"} <= shown.keys()
    assert "running for" not in shown
    code, out, _ = await cli(server, "get", "run", ids["run"], "-o", "json")
    assert json.loads(out)["id"] == ids["run"]  # -o json stays the run object


async def test_get_run_of_a_queued_run_shows_only_time_queued(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    code, out, _ = await cli(server, "--no-ux", "get", "run", run_id)
    assert code == 0
    shown = fields(out)
    assert shown["status"] == ["queued"]
    assert "queued for" in shown
    assert not {"running for", "started", "tools", "checkpoint"} & shown.keys()


async def test_debug_conversation_dumps_runs_events_and_children(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    ids = await worked_run(server, conversation="conv-debug")
    await end(server, ids["run"], "end_turn", "done")  # the conversation's lane is free again
    second = (await worked_run(server, conversation="conv-debug"))["run"]
    code, out, _ = await cli(server, "debug", "conversation", "conv-debug")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "conversation conv-debug: 2 runs"
    headers = [line for line in lines if line.startswith("run ")]
    assert headers == [f"run {ids['run']} (agent-1, completed)", f"run {second} (agent-1, running)"]
    assert "  tool results:" in lines
    assert '    search call-1 success: {"hits":3}' in lines
    assert any(line.startswith("    cp-1 (tool_result) #") for line in lines)
    assert any(" tool_started " in line and '"arguments":{"q":"x"}' in line for line in lines)
    assert f"  child runs: {ids['child']}" in lines
    assert f"    run {ids['child']} (agent-2, queued)" not in lines  # only with --children

    code, out, _ = await cli(server, "debug", "conversation", "conv-debug", "--children")
    assert code == 0
    assert f"    run {ids['child']} (agent-2, queued)" in out.splitlines()

    code, out, _ = await cli(
        server, "debug", "conversation", "conv-debug", "--children", "-o", "json"
    )
    assert code == 0
    dumped = json.loads(out)  # one document
    assert dumped["conversation_id"] == "conv-debug"
    assert [entry["run"]["id"] for entry in dumped["runs"]] == [ids["run"], second]
    first = dumped["runs"][0]
    assert [event["event_type"] for event in first["events"]][:2] == [
        "run_created",
        "message_created",
    ]
    assert first["tool_results"][0]["result"] == {"hits": 3}
    assert first["checkpoints"][0]["checkpoint_id"] == "cp-1"
    assert [child["run"]["id"] for child in first["children"]] == [ids["child"]]
    assert first["children"][0]["events"][0]["event_type"] == "run_created"


async def test_debug_conversation_of_an_unknown_id_is_an_error(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    code, out, err = await cli(server, "debug", "conversation", "conv-none")
    assert (code, out) == (2, "")
    assert "conversation 'conv-none' has no run" in err
