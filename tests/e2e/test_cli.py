"""``runtrack`` client verbs as subprocesses against a live server."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import httpx
import pytest

from eventstore import NewEvent, open_store
from tests.waiting import eventually

from .conftest import ProcessFactory, ServerProcess, run_cli

pytestmark = pytest.mark.anyio


cli = run_cli


async def finish(server: ServerProcess, run_id: str, stop_reason: str = "end_turn") -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
        body = {
            "events": [
                {
                    "event_type": "message_created",
                    "payload": {"role": "assistant", "content": f"done {run_id[-4:]}"},
                },
                {"event_type": "run_status_changed", "payload": {"stop_reason": stop_reason}},
            ]
        }
        assert (await client.post(f"/v1/runs/{run_id}/events", json=body)).status_code == 201


async def sent_run(server: ServerProcess, message: str = "hello") -> str:
    code, out, _ = await cli(server, "send", "agent-1", message, "--no-wait")
    assert code == 0
    assert out.startswith("Message sent. Run ID: run-")
    return out.split("Run ID: ")[1].strip()


async def test_send_get_and_list(server_process: ProcessFactory) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    code, out, _ = await cli(server, "get", "run", run_id, "-o", "json")
    assert code == 0
    assert json.loads(out)["status"] == "queued"
    code, out, _ = await cli(server, "get", "runs", "--agent", "agent-1", "-o", "json")
    assert [run["id"] for run in json.loads(out)] == [run_id]
    code, out, _ = await cli(server, "--no-ux", "get", "runs", "--status", "queued")
    assert out.split("\t")[:3] == [run_id, "agent-1", "queued"]
    code, _, err = await cli(server, "get", "run", "run-missing")
    assert code == 2
    assert "run_not_found" in err


async def test_get_run_wait_follows_the_run_to_its_end(server_process: ProcessFactory) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    waiting = asyncio.ensure_future(
        cli(server, "--no-ux", "get", "run", run_id, "--wait", "--messages")
    )
    await finish(server, run_id)
    code, out, _ = await waiting
    assert code == 0
    assert f"{run_id}\tagent-1\tcompleted" in out
    assert "user: hello" in out
    assert f"assistant: done {run_id[-4:]}" in out


@pytest.mark.parametrize(
    ("endings", "expected"),
    [(["end_turn", "end_turn"], 0), (["error"], 1), (["end_turn", "cancelled"], 1)],
    ids=["all-completed", "failed", "mixed"],
)
async def test_track_exit_codes(
    server_process: ProcessFactory, endings: list[str], expected: int
) -> None:
    server = await server_process()
    run_ids = [await sent_run(server) for _ in endings]
    tracking = asyncio.ensure_future(cli(server, "track", *run_ids))
    for run_id, ending in zip(run_ids, endings, strict=True):
        await finish(server, run_id, ending)
    code, out, _ = await tracking
    assert code == expected
    assert out.count("done ") == len(endings)  # each run's messages, as it completes


async def test_track_prints_json_for_scripts(server_process: ProcessFactory) -> None:
    server = await server_process()
    run_ids = [await sent_run(server) for _ in range(2)]
    tracking = asyncio.ensure_future(cli(server, "track", *run_ids, "-o", "json"))
    for run_id, ending in zip(run_ids, ["end_turn", "error"], strict=True):
        await finish(server, run_id, ending)
    code, out, _ = await tracking
    assert code == 1
    tracked = json.loads(out)
    assert [(t["run"]["id"], t["run"]["status"]) for t in tracked] == [
        (run_ids[0], "completed"),
        (run_ids[1], "failed"),
    ]
    first_message = tracked[0]["messages"][0]
    assert (first_message["role"], first_message["content"]) == ("user", "hello")


async def test_track_usage_and_connection_errors(server_process: ProcessFactory) -> None:
    server = await server_process()
    assert (await cli(server, "track"))[0] == 2
    assert (await cli(server, "track", "run-missing"))[0] == 2
    await server.signal(signal.SIGKILL)
    code, _, err = await cli(server, "get", "runs")
    assert code == 2
    assert "cannot reach the server" in err


async def test_cancel_and_resume(server_process: ProcessFactory) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    code, out, _ = await cli(server, "cancel", run_id)
    assert (code, out.split("\t")[1]) == (0, "cancelled")
    code, _, err = await cli(server, "resume", run_id)
    assert code == 2
    assert "resume_refused" in err


async def test_events_tail_resumes_from_its_cursor_file(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    server = await server_process()
    cursor = tmp_path / "cursor"
    run_id = await sent_run(server)  # events 1 and 2
    args = [
        sys.executable,
        "-m",
        "api",
        "--url",
        server.url,
        "events",
        "tail",
        "--follow",
        "--cursor-file",
        str(cursor),
    ]
    first = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert first.stdout is not None
    seen = [json.loads(await first.stdout.readline())["id"] for _ in range(2)]
    await eventually(lambda: cursor.exists() and cursor.read_text() == "2")  # another process
    first.send_signal(signal.SIGKILL)
    await first.wait()
    await finish(server, run_id)  # events 3, 4, 5 while no tail runs
    second = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert second.stdout is not None
    seen += [json.loads(await second.stdout.readline())["id"] for _ in range(3)]
    second.send_signal(signal.SIGKILL)
    await second.wait()
    assert seen == [1, 2, 3, 4, 5]


async def test_export_verify_and_rebuild(server_process: ProcessFactory) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    await finish(server, run_id)
    code, out, _ = await cli(server, "events", "export")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == [1, 2, 3, 4, 5]
    code, out, _ = await cli(server, "audit", "verify")
    assert (code, json.loads(out)["ok"]) == (0, True)
    code, out, _ = await cli(
        server, "projections", "rebuild", "--check", "--database", server.database
    )
    assert code == 0
    assert out.startswith("5 events, 1 runs")


async def test_rebuild_refills_a_stale_read_model_that_check_and_keys_leave_alone(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "stale.db")
    async with open_store(database) as store:  # the log alone, as before an upgrade
        await store.append(
            "default", "run-1", [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
        )

    async def runtrack(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "api", *args, "--database", database),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    assert (await runtrack("keys", "create", "--role", "user"))[0] == 0
    code, out = await runtrack("projections", "rebuild", "--check")
    assert code == 1
    assert "run 'runtrack projections rebuild'" in out
    code, out = await runtrack("projections", "rebuild")
    assert code == 0
    assert out.startswith("1 events, 1 runs")
    code, out = await runtrack("projections", "rebuild", "--check")
    assert (code, out.split(",")[:2]) == (0, ["1 events", " 1 runs"])


async def test_keys_create_list_and_revoke(server_process: ProcessFactory, tmp_path: Path) -> None:
    database = str(tmp_path / "keys.db")

    async def keys(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "api",
            "keys",
            *args,
            "--database",
            database,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()

    code, token = await keys("create", "--role", "operator", "--name", "ci")
    assert code == 0
    assert token.startswith("rtk_")
    key_id = token.split("_")[1]
    code, listing = await keys("list")
    assert f"{key_id}\tdefault\toperator\tci\tactive" in listing
    assert token.strip() not in listing  # secrets are never shown again
    assert (await keys("create", "--role", "superuser"))[0] == 2
    server = await server_process(database=database)
    async with httpx.AsyncClient(base_url=server.url) as client:
        headers = {"Authorization": f"Bearer {token.strip()}"}
        assert (await client.get("/v1/runs", headers=headers)).status_code == 200
    code, _ = await keys("revoke", key_id)
    assert code == 0
    assert (await keys("revoke", key_id))[0] == 1


async def test_answer_a_waiting_run_and_get_run_shows_progress_and_question(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    ask = {"question_id": "q-1", "question": "Deploy now?", "choices": ["yes", "no"]}
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.post("/v1/runs/claim", json={"worker_id": "w"})
        events = [
            {"event_type": "metadata_updated", "payload": {"patch": {"progress": 3, "total": 4}}},
            {"event_type": "human_input_requested", "payload": ask},
            {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}},
        ]
        appended = await client.post(f"/v1/runs/{run_id}/events", json={"events": events})
        assert appended.status_code == 201
    code, out, _ = await cli(server, "--no-ux", "get", "run", run_id)
    assert code == 0
    assert "progress: 3/4 (75%)" in out
    assert "question q-1: Deploy now? [yes / no]" in out
    code, out, _ = await cli(server, "answer", run_id, '{"approve": true}')
    assert (code, out.strip()) == (0, f"{run_id}\tqueued\tanswered")
    code, _, err = await cli(server, "answer", run_id, "again")
    assert code == 2
    assert "not_waiting_on_human" in err
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
    answers = [e["payload"] for e in page if e["event_type"] == "human_input"]
    assert answers == [{"question_id": "q-1", "response": {"approve": True}, "answered_by": None}]


@pytest.mark.parametrize(
    ("argv", "sent"), [(["yes please"], "yes please"), (["42"], 42), (["42", "--text"], "42")]
)
async def test_answer_text_is_json_when_it_parses(
    server_process: ProcessFactory, argv: list[str], sent: object
) -> None:
    server = await server_process()
    run_id = await sent_run(server)
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.post("/v1/runs/claim", json={"worker_id": "w"})
        waits = {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}}
        await client.post(f"/v1/runs/{run_id}/events", json={"events": [waits]})
    assert (await cli(server, "answer", run_id, *argv))[0] == 0
    async with httpx.AsyncClient(base_url=server.url) as client:
        page = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
    assert [e["payload"]["response"] for e in page if e["event_type"] == "human_input"] == [sent]
