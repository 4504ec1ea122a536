"""The worker's wire (issue 17) over real HTTP: the claim's answer and its server-side wait, an
empty heartbeat, questions to a person, metadata merge patches."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.conftest import LiveServer, ServerFactory
from tests.waiting import eventually

from .test_runs import append, claim, create, status

pytestmark = pytest.mark.anyio


def tool_started(call_id: str) -> dict[str, Any]:
    payload = {"tool_call_id": call_id, "name": "search", "arguments": {"q": call_id}}
    return {"event_type": "tool_started", "payload": payload}


def question(question_id: str = "q-1", text: str = "Ship it?", **extra: Any) -> dict[str, Any]:
    payload = {"question_id": question_id, "question": text, **extra}
    return {"event_type": "human_input_requested", "payload": payload}


CHECKPOINT = {
    "event_type": "checkpoint_created",
    "payload": {"checkpoint_id": "c", "kind": "input"},
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so that the refusals share one server per backend


def waiters(server: LiveServer) -> int:
    """Subscriptions the server's live tail feeds: a waiting claim is one."""
    count: int = server.app.state.store.subscriber_count
    return count


async def test_the_claim_advertises_the_heartbeat_timing(server_factory: ServerFactory) -> None:
    server = await server_factory(heartbeat_timeout=90.0)
    async with server.client() as client:
        await create(client)
        claimed = await claim(client)
    assert claimed["heartbeat_timeout_seconds"] == 90.0
    assert claimed["heartbeat_interval_seconds"] == 30.0
    assert claimed["questions"] == claimed["human_inputs"] == claimed["tool_calls_started"] == []


async def test_a_resumed_claim_carries_questions_answers_and_unfinished_tools(
    client: httpx.AsyncClient,
) -> None:
    run = (await create(client))["id"]
    await claim(client)
    result = {"tool_call_id": "a", "name": "search", "result": {"n": 1}}
    await append(client, run, tool_started("a"), tool_started("b"), CHECKPOINT)
    assert (await client.post(f"/v1/runs/{run}/tool-results", json=result)).status_code == 201
    asked = await append(client, run, question(), status("waiting_on_human"))
    assert asked.status_code == 201, asked.text
    answered = await client.post(f"/v1/runs/{run}/input", json={"response": "yes"})
    assert answered.json()["status"] == "queued"
    again = await claim(client)
    assert again["run"]["id"] == run
    assert [e["payload"]["question_id"] for e in again["questions"]] == ["q-1"]
    assert [e["payload"] for e in again["human_inputs"]] == [
        {"question_id": "q-1", "response": "yes", "answered_by": None}
    ]
    assert [e["payload"]["tool_call_id"] for e in again["tool_calls_started"]] == ["b"]
    assert [e["payload"]["tool_call_id"] for e in again["tool_results"]] == ["a"]


async def test_a_heartbeat_takes_no_body(client: httpx.AsyncClient) -> None:
    """Was 422 ("the body must be a JSON object"): like cancel, no body is an empty one."""
    run = (await create(client))["id"]
    await claim(client)
    for beat in (
        await client.post(f"/v1/runs/{run}/heartbeat"),
        await client.post(f"/v1/runs/{run}/heartbeat", json={}),
    ):
        assert beat.status_code == 200, beat.text
        assert beat.json() == {"run_id": run, "status": "running", "cancel_requested": False}


@pytest.mark.parametrize("wait", [-1, 30.5, "5", True])
async def test_a_claim_wait_out_of_range_is_refused(
    shared_client: httpx.AsyncClient, wait: Any
) -> None:
    answer = await shared_client.post(
        "/v1/runs/claim", json={"worker_id": "w", "wait_seconds": wait}
    )
    assert answer.status_code == 422, answer.text


async def test_a_waiting_claim_is_woken_by_a_new_run(server: LiveServer) -> None:
    async with server.client() as client:
        idle = waiters(server)
        waiting = asyncio.ensure_future(
            client.post("/v1/runs/claim", json={"worker_id": "w", "wait_seconds": 30})
        )
        await eventually(lambda: waiters(server) == idle + 1)  # it waits on the tail
        run = await create(client)
        answer = await waiting
    assert answer.status_code == 200, answer.text
    assert answer.json()["run"]["id"] == run["id"]
    assert waiters(server) == idle


async def test_a_waiting_claim_is_woken_when_the_lane_frees(client: httpx.AsyncClient) -> None:
    first = await create(client, conversation_id="c")
    await claim(client)
    second = await create(client, conversation_id="c")
    assert second["status"] == "waiting_on_lane"
    waiting = asyncio.ensure_future(
        client.post("/v1/runs/claim", json={"worker_id": "w2", "wait_seconds": 30})
    )
    await append(client, first["id"], status(stop_reason="end_turn"))
    answer = await waiting
    assert answer.status_code == 200, answer.text
    assert answer.json()["run"]["id"] == second["id"]


async def test_a_wait_with_nothing_to_claim_ends_in_204(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/runs/claim", json={"worker_id": "w", "wait_seconds": 0.2})
    assert answer.status_code == 204


async def test_two_waiting_claims_never_get_the_same_run(server: LiveServer) -> None:
    async with server.client() as client:
        idle = waiters(server)
        claims = [
            asyncio.ensure_future(
                client.post("/v1/runs/claim", json={"worker_id": f"w{n}", "wait_seconds": 2})
            )
            for n in range(2)
        ]
        await eventually(lambda: waiters(server) == idle + 2)
        run = await create(client)
        answers = await asyncio.gather(*claims)
    assert sorted(a.status_code for a in answers) == [200, 204]
    winner = next(a for a in answers if a.status_code == 200)
    assert winner.json()["run"]["id"] == run["id"]
    async with server.client() as client:
        events = (await client.get(f"/v1/runs/{run['id']}/events")).json()["items"]
    claims_made = [e for e in events if e["payload"].get("to") == "running"]
    assert len(claims_made) == 1


async def test_a_client_disconnect_ends_the_wait(server: LiveServer) -> None:
    idle = waiters(server)
    async with server.client() as client:
        waiting = asyncio.ensure_future(
            client.post("/v1/runs/claim", json={"worker_id": "w", "wait_seconds": 30})
        )
        await eventually(lambda: waiters(server) == idle + 1)
        waiting.cancel()  # closes the connection
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await eventually(lambda: waiters(server) == idle)  # the server gave up the wait at once
    async with server.client() as client:  # and claimed nothing for a worker that left
        run = await create(client)
        assert (await client.get(f"/v1/runs/{run['id']}")).json()["status"] == "queued"


async def test_a_shutdown_ends_the_wait(server: LiveServer) -> None:
    """The test server's graceful timeout is 2 s: a wait it had to cut would be no 204."""
    idle = waiters(server)
    async with server.client() as client:
        waiting = asyncio.ensure_future(
            client.post("/v1/runs/claim", json={"worker_id": "w", "wait_seconds": 30})
        )
        await eventually(lambda: waiters(server) == idle + 1)
        server.server.should_exit = True
        answer = await waiting
        await server.task
    assert answer.status_code == 204


async def test_a_question_is_shown_and_a_repeat_is_replayed_or_refused(
    client: httpx.AsyncClient,
) -> None:
    run = await create(client)
    await claim(client)
    asked = await append(
        client, run["id"], question(choices=["yes", "no"]), status("waiting_on_human")
    )
    assert asked.status_code == 201, asked.text
    recorded = asked.json()["events"][0]
    assert recorded["visibility"] == "user"
    shown = (await client.get(f"/v1/runs/{run['id']}")).json()
    assert shown["question"] == {
        "question_id": "q-1",
        "question": "Ship it?",
        "choices": ["yes", "no"],
    }
    panel = (await client.get(f"/v1/conversations/{run['conversation_id']}/agent-status")).json()
    assert panel["panel"]["can_answer"] is True
    assert panel["panel"]["question"]["question"] == "Ship it?"

    other = await append(client, run["id"], question(text="Ship it now?"))
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "duplicate_question"
    same = await append(client, run["id"], question(choices=["yes", "no"]))
    assert same.status_code == 201, same.text
    assert same.json()["events"] == [recorded]  # the recorded question, not a second one
    events = (await client.get(f"/v1/runs/{run['id']}/events")).json()["items"]
    assert [e["event_type"] for e in events].count("human_input_requested") == 1


async def test_a_question_batch_asking_one_id_twice_is_refused(client: httpx.AsyncClient) -> None:
    run = await create(client)
    await claim(client)
    twice = await append(client, run["id"], question(), question())
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "duplicate_question"


@pytest.mark.parametrize(
    "payload",
    [
        {"question_id": "", "question": "x"},
        {"question_id": "q\u0000", "question": "x"},
        {"question_id": "q", "question": "x" * 20_001},
        {"question_id": "q", "question": "x", "choices": "yes"},
        {"question": "x"},
    ],
)
async def test_a_bad_question_is_422(
    shared_client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    run = await create(shared_client)
    answer = await append(
        shared_client, run["id"], {"event_type": "human_input_requested", "payload": payload}
    )
    assert answer.status_code == 422, answer.text


async def test_a_worker_cannot_append_an_answer(shared_client: httpx.AsyncClient) -> None:
    run = await create(shared_client)
    event = {"event_type": "human_input", "payload": {"response": "yes"}}
    assert (await append(shared_client, run["id"], event)).status_code == 422


async def test_metadata_merge_patch_and_the_list_filter(client: httpx.AsyncClient) -> None:
    run = await create(client, metadata={"a": 1, "nest": {"x": 1, "y": 2}, "tag": "old"})
    await claim(client)
    patch = {"tag": "new", "nest": {"y": None, "z": {"deep": True}}, "a": None, "progress": 3}
    answer = await append(
        client, run["id"], {"event_type": "metadata_updated", "payload": {"patch": patch}}
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["events"][0]["visibility"] == "user"
    merged = {"nest": {"x": 1, "z": {"deep": True}}, "tag": "new", "progress": 3}
    assert (await client.get(f"/v1/runs/{run['id']}")).json()["metadata"] == merged

    async def listed(flt: str) -> list[str]:
        page = await client.get("/v1/runs", params={"metadata": flt})
        return [r["id"] for r in page.json()["items"]]

    assert await listed("tag=new") == [run["id"]]
    assert await listed("progress=3") == [run["id"]]
    assert await listed("tag=old") == []
    assert await listed("a=1") == []
    assert await listed('nest={"x":1,"z":{"deep":true}}') == [run["id"]]


@pytest.mark.parametrize(
    "event",
    [
        {"event_type": "metadata_updated", "payload": {"patch": [1]}},
        {"event_type": "metadata_updated", "payload": {}},
        {"event_type": "metadata_updated", "payload": {"patch": {}}, "visibility": "operator"},
    ],
)
async def test_a_bad_metadata_patch_is_422_and_writes_nothing(
    shared_client: httpx.AsyncClient, event: dict[str, Any]
) -> None:
    run = await create(shared_client, metadata={"k": "v"})
    answer = await append(shared_client, run["id"], event)
    assert answer.status_code == 422, answer.text
    after = (await shared_client.get(f"/v1/runs/{run['id']}")).json()
    assert after["metadata"] == {"k": "v"}
    assert after["last_sequence"] == run["last_sequence"]


async def waiting_on_human(client: httpx.AsyncClient, **body: Any) -> str:
    run = str((await create(client, **body))["id"])
    claimed = await client.post("/v1/runs/claim", json={"worker_id": "w"})
    assert claimed.json()["run"]["id"] == run
    asked = await append(client, run, question(), status("waiting_on_human"))
    assert asked.status_code == 201, asked.text
    return run


async def test_of_two_racing_answers_only_one_moves_the_run(server: LiveServer) -> None:
    async with server.client() as first, server.client() as second:
        run = await waiting_on_human(first)
        answers = await asyncio.gather(
            first.post(f"/v1/runs/{run}/input", json={"response": "yes"}),
            second.post(f"/v1/runs/{run}/input", json={"response": "no", "question_id": "q-1"}),
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        refused = next(a for a in answers if a.status_code == 409)
        assert refused.json()["error"]["code"] == "not_waiting_on_human"
        events = (await first.get(f"/v1/runs/{run}/events")).json()["items"]
    assert [e["event_type"] for e in events].count("human_input") == 1
    assert [e["payload"].get("to") for e in events].count("queued") == 1


async def test_bad_answers_are_refused_and_write_nothing(client: httpx.AsyncClient) -> None:
    run = await waiting_on_human(client)
    for body, code in (
        ({}, 422),
        ({"response": "x", "question_id": ""}, 422),
        ({"response": "x", "extra": 1}, 422),
        ({"response": "x", "question_id": "q-9"}, 409),
    ):
        answer = await client.post(f"/v1/runs/{run}/input", json=body)
        assert answer.status_code == code, (body, answer.text)
    missing = await client.post("/v1/runs/run-none/input", json={"response": "x"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "run_not_found")
    after = (await client.get(f"/v1/runs/{run}")).json()
    assert (after["status"], after["question"]["question_id"]) == ("waiting_on_human", "q-1")


async def failed_resumable(client: httpx.AsyncClient, conversation_id: str) -> str:
    run = str((await create(client, conversation_id=conversation_id))["id"])
    claimed = await client.post("/v1/runs/claim", json={"worker_id": "w"})
    assert claimed.json()["run"]["id"] == run
    ended = await append(client, run, CHECKPOINT, status(stop_reason="error"))
    assert ended.status_code == 201, ended.text
    return run


async def test_resumes_on_a_busy_lane_wait_and_are_claimed_in_order(
    client: httpx.AsyncClient,
) -> None:
    """Was 409 lane_busy. Two resumed runs wait behind the lane's holder in the order of their
    resumes (the second was created first); a waiting claim is woken when the lane frees."""
    older = await failed_resumable(client, "lane-c")
    newer = await failed_resumable(client, "lane-c")
    holder = (await create(client, conversation_id="lane-c"))["id"]
    assert (await claim(client))["run"]["id"] == holder
    for run in (newer, older):
        resumed = await client.post(f"/v1/runs/{run}/resume")
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["status"], resumed.json()["error"]) == ("waiting_on_lane", None)
    panel = (await client.get("/v1/conversations/lane-c/agent-status")).json()
    assert panel["run"]["id"] == holder
    waiting = asyncio.ensure_future(
        client.post("/v1/runs/claim", json={"worker_id": "w2", "wait_seconds": 30})
    )
    await append(client, holder, status(stop_reason="end_turn"))
    first = await waiting
    assert first.json()["run"]["id"] == newer
    assert first.json()["checkpoint"]["payload"]["checkpoint_id"] == "c"
    await append(client, newer, status(stop_reason="end_turn"))
    assert (await claim(client))["run"]["id"] == older
    events = (await client.get(f"/v1/runs/{older}/events")).json()["items"]
    moves = [e["payload"]["to"] for e in events if e["event_type"] == "run_status_changed"]
    assert moves == ["running", "failed", "waiting_on_lane", "resuming", "running"]


async def test_many_waiting_claims_take_each_new_run_once(server: LiveServer) -> None:
    async with server.client() as client:
        idle = waiters(server)
        claims = [
            asyncio.ensure_future(
                client.post("/v1/runs/claim", json={"worker_id": f"w{n}", "wait_seconds": 2})
            )
            for n in range(5)
        ]
        await eventually(lambda: waiters(server) == idle + 5)
        made = [(await create(client, conversation_id=f"c-{n}"))["id"] for n in range(2)]
        answers = await asyncio.gather(*claims)
    claimed = [a.json()["run"]["id"] for a in answers if a.status_code == 200]
    assert sorted(claimed) == sorted(made)
    assert [a.status_code for a in answers].count(204) == 3


async def test_the_server_caps_the_wait(server_factory: ServerFactory) -> None:
    """With ``--max-claim-wait 0.2`` a claim asking 30 s answers within the 5 s client timeout."""
    server = await server_factory(max_claim_wait=0.2)
    async with server.client() as client:
        answer = await client.post(
            "/v1/runs/claim", json={"worker_id": "w", "wait_seconds": 30}, timeout=5
        )
    assert answer.status_code == 204
