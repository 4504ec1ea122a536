"""``/v1/runs`` over real HTTP: the happy paths and bad input on every route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/runs", json={"agent_id": "agent-1", **body})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def claim(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/runs/claim", json={"worker_id": "w1", **body})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def append(
    client: httpx.AsyncClient, run_id: str, *events: dict[str, Any], **extra: Any
) -> httpx.Response:
    return await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events), **extra})


def status(to: str | None = None, **payload: Any) -> dict[str, Any]:
    if to is not None:
        payload["to"] = to
    return {"event_type": "run_status_changed", "payload": payload}


async def test_create_get_and_list(client: httpx.AsyncClient) -> None:
    run = await create(client, conversation_id="conv-1", metadata={"env": "prod"}, message="hi")
    assert run["id"].startswith("run-")
    assert (run["status"], run["conversation_id"], run["num_messages"]) == ("queued", "conv-1", 1)
    fetched = (await client.get(f"/v1/runs/{run['id']}")).json()
    assert fetched == run
    listing = (
        await client.get("/v1/runs", params={"metadata": "env=prod", "status": "queued"})
    ).json()
    assert [r["id"] for r in listing["items"]] == [run["id"]]
    assert listing["next_cursor"] is None


async def test_stats_count_every_matching_run_by_status_and_duration(
    client: httpx.AsyncClient,
) -> None:
    for agent in ("agent-1", "agent-1", "agent-2"):
        await create(client, agent_id=agent)
    for _ in range(2):
        running = await claim(client)
        response = await append(client, running["run"]["id"], status(stop_reason="end_turn"))
        assert response.status_code == 201, response.text
    stats = (await client.get("/v1/runs/stats")).json()
    assert stats["total"] == 3
    assert stats["by_status"] == {"completed": 2, "queued": 1}
    assert [bucket["count"] for bucket in stats["durations"]] == [2, 0, 0, 0, 0, 0]
    assert [bucket["below_ms"] for bucket in stats["durations"]] == [
        1000,
        10_000,
        60_000,
        600_000,
        3_600_000,
        None,
    ]
    narrowed = (await client.get("/v1/runs/stats", params={"active": "false"})).json()
    assert narrowed["by_status"] == {"completed": 2, "queued": 1}
    only_queued = (await client.get("/v1/runs/stats", params={"status": "queued"})).json()
    assert (only_queued["total"], sum(b["count"] for b in only_queued["durations"])) == (1, 0)
    refused = await client.get("/v1/runs/stats", params={"status": "sleeping"})
    assert refused.status_code == 400
    assert "sleeping" in refused.json()["error"]["message"]


async def test_status_history_answers_each_of_the_last_seconds(
    client: httpx.AsyncClient,
) -> None:
    first = await create(client, agent_id="agent-h")
    await claim(client)
    await create(client, agent_id="agent-h")
    history = (await client.get("/v1/runs/stats/history", params={"agent_id": "agent-h"})).json()
    assert history["seconds"] == 60
    samples = history["samples"]
    assert len(samples) == 60
    assert [s["at"] for s in samples] == sorted(s["at"] for s in samples)
    assert samples[-1]["by_status"] == {"queued": 1, "running": 1}
    assert samples[0]["by_status"] == {}  # a minute ago neither run existed
    narrowed = await client.get(
        "/v1/runs/stats/history", params={"seconds": "5", "status": "running"}
    )
    assert [s["by_status"] for s in narrowed.json()["samples"]][-1] == {"running": 1}
    assert len(narrowed.json()["samples"]) == 5
    prefix = {"run_id_prefix": first["id"], "seconds": "1"}
    by_prefix = (await client.get("/v1/runs/stats/history", params=prefix)).json()
    assert by_prefix["samples"][-1]["by_status"] == {"running": 1}
    for seconds in ("0", "301", "a minute"):
        refused = await client.get("/v1/runs/stats/history", params={"seconds": seconds})
        assert refused.status_code == 400, seconds
        assert "seconds" in refused.json()["error"]["message"]


async def test_run_id_prefix_narrows_listings_and_refuses_a_too_long_one(
    client: httpx.AsyncClient,
) -> None:
    run = await create(client)
    await create(client)
    listed = (await client.get("/v1/runs", params={"run_id_prefix": run["id"][:-1]})).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]]
    refused = await client.get("/v1/runs", params={"run_id_prefix": "r" * 201})
    assert refused.status_code == 400
    assert "run_id_prefix" in refused.json()["error"]["message"]


async def test_create_without_conversation_gets_a_fresh_one(client: httpx.AsyncClient) -> None:
    first, second = await create(client), await create(client)
    assert first["conversation_id"] != second["conversation_id"]


async def test_a_retried_create_with_an_idempotency_key_makes_one_run(
    client: httpx.AsyncClient,
) -> None:
    first = await create(client, idempotency_key="req-1")
    again = await client.post("/v1/runs", json={"agent_id": "agent-1", "idempotency_key": "req-1"})
    assert again.status_code == 201
    assert again.json()["id"] == first["id"]
    assert len((await client.get("/v1/runs")).json()["items"]) == 1


async def test_a_retried_status_change_returns_the_first_result(
    client: httpx.AsyncClient,
) -> None:
    """The server fills in ``from``; a retry after success must still match what was sent."""
    await create(client)
    run_id = (await claim(client))["run"]["id"]
    first = await append(client, run_id, status(stop_reason="end_turn"), idempotency_key="end-1")
    again = await append(client, run_id, status(stop_reason="end_turn"), idempotency_key="end-1")
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json()["events"] == first.json()["events"]
    assert again.json()["events"][0]["payload"]["from"] == "running"
    different = await append(client, run_id, status(stop_reason="error"), idempotency_key="end-1")
    assert different.status_code == 409
    assert different.json()["error"]["code"] == "idempotency_mismatch"
    events = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
    assert [e["event_type"] for e in events].count("run_status_changed") == 2


async def test_worker_flow(client: httpx.AsyncClient) -> None:
    run = await create(client, message="work")
    claimed = await claim(client)
    assert claimed["run"]["id"] == run["id"]
    assert claimed["run"]["status"] == "running"
    assert (await client.post("/v1/runs/claim", json={"worker_id": "w2"})).status_code == 204
    response = await append(
        client,
        run["id"],
        {"event_type": "tool_started", "payload": {"tool_call_id": "t1", "name": "search"}},
        {"event_type": "step_completed", "payload": {"prompt_tokens": 10, "completion_tokens": 5}},
        {"event_type": "message_created", "payload": {"role": "assistant", "content": "done"}},
        status(stop_reason="end_turn"),
    )
    assert response.status_code == 201
    events = response.json()["events"]
    assert [e["sequence"] for e in events] == [4, 5, 6, 7]
    assert events[-1]["payload"] == {
        "from": "running",
        "to": "completed",
        "stop_reason": "end_turn",
        "detail": None,
        "last_heartbeat_at": None,
    }
    final = (await client.get(f"/v1/runs/{run['id']}")).json()
    assert (final["status"], final["total_tokens"], final["tools_used"]) == (
        "completed",
        15,
        ["search"],
    )
    messages = (await client.get(f"/v1/runs/{run['id']}/messages")).json()["items"]
    assert [m["content"] for m in messages] == ["work", "done"]
    usage = (await client.get(f"/v1/runs/{run['id']}/usage")).json()
    assert (usage["prompt_tokens"], usage["num_steps"]) == (10, 1)
    earlier = (
        await client.get(f"/v1/runs/{run['id']}/state", params={"at_event_id": events[0]["id"]})
    ).json()
    assert earlier["status"] == "running"


async def test_heartbeat_cancel_and_resume(client: httpx.AsyncClient) -> None:
    run = await create(client)
    await claim(client)
    beat = await client.post(f"/v1/runs/{run['id']}/heartbeat", json={"worker_id": "w1"})
    assert beat.json() == {"run_id": run["id"], "status": "running", "cancel_requested": False}
    cancelled = await client.post(f"/v1/runs/{run['id']}/cancel")
    assert cancelled.json()["cancel_requested"] is True
    beat = await client.post(f"/v1/runs/{run['id']}/heartbeat", json={})
    assert beat.json()["cancel_requested"] is True
    appended = await append(client, run["id"], {"event_type": "custom.progress", "payload": {}})
    assert appended.json()["run"] == {"status": "running", "cancel_requested": True}

    other = await create(client)
    await claim(client)
    await append(
        client,
        other["id"],
        {"event_type": "checkpoint_created", "payload": {"checkpoint_id": "c", "kind": "input"}},
        status("timed_out"),
    )
    resumed = await client.post(f"/v1/runs/{other['id']}/resume")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "resuming"


async def test_journal_and_tool_results(client: httpx.AsyncClient) -> None:
    run = await create(client)
    await claim(client)
    await append(
        client,
        run["id"],
        {
            "event_type": "journal_updated",
            "payload": {"objective": "o", "handoff_next_action": "retry"},
        },
    )
    journal = (await client.get(f"/v1/runs/{run['id']}/journal")).json()
    assert journal["current"]["handoff_next_action"] == "retry"
    body = {"tool_call_id": "c1", "name": "fetch", "result": {"ok": True}}
    first = await client.post(f"/v1/runs/{run['id']}/tool-results", json=body)
    again = await client.post(
        f"/v1/runs/{run['id']}/tool-results", json={**body, "result": {"ok": False}}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"event": first.json()["event"], "replayed": True}


async def test_json_event_pages(client: httpx.AsyncClient) -> None:
    run = await create(client, message="m")
    page = (await client.get("/v1/events", params={"limit": 1})).json()
    assert [e["event_type"] for e in page["items"]] == ["run_created"]
    assert page["next_cursor"] == "1"
    assert (page["position"], page["head"]) == (1, 2)
    rest = (await client.get("/v1/events", params={"after_event_id": page["next_cursor"]})).json()
    assert [e["id"] for e in rest["items"]] == [2]
    assert rest["next_cursor"] is None
    assert rest["head"] == 2
    run_page = (await client.get(f"/v1/runs/{run['id']}/events")).json()
    assert [e["sequence"] for e in run_page["items"]] == [1, 2]


async def count_events(client: httpx.AsyncClient) -> int:
    return int((await client.get("/readyz")).json()["head_id"])


BAD_REQUESTS = [
    ("POST", "/v1/runs", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/runs", b"[1, 2]", 422, "invalid_request"),
    ("POST", "/v1/runs", b'{"agent_id": 7}', 422, "invalid_request"),
    ("POST", "/v1/runs", b'{"agent_id": "a", "surprise": 1}', 422, "invalid_request"),
    ("POST", "/v1/runs", b'{"agent_id": "a", "callback_url": "ftp://x"}', 422, "invalid_request"),
    ("POST", "/v1/runs/claim", b"{}", 422, "invalid_request"),
    ("POST", "/v1/runs/RUN/events", b'{"events": []}', 422, "invalid_request"),
    ("POST", "/v1/runs/RUN/events", b'{"events": [{"event_type": "bogus"}]}', 422, "invalid_event"),
    (
        "POST",
        "/v1/runs/RUN/events",
        b'{"events": [{"event_type": "message_created", "payload": {"role": "x", "content": 1}}]}',
        422,
        "invalid_event",
    ),
    (
        "POST",
        "/v1/runs/RUN/events",
        b'{"events": [{"event_type": "run_status_changed", "payload": {"to": "completed"}}]}',
        409,
        "illegal_transition",
    ),
    (
        "POST",
        "/v1/runs/RUN/events",
        b'{"events": [{"event_type": "custom.x"}], "expected_sequence": 99}',
        409,
        "concurrency_conflict",
    ),
    (
        "POST",
        "/v1/runs/RUN/events",
        b'{"events": [{"event_type": "custom.x"}], "expected_sequence": -1}',
        422,
        "invalid_request",
    ),
    (
        "POST",
        "/v1/runs/run-missing/events",
        b'{"events": [{"event_type": "custom.x"}]}',
        404,
        "run_not_found",
    ),
    ("POST", "/v1/runs/run-missing/cancel", b"", 404, "run_not_found"),
    ("POST", "/v1/runs/RUN/resume", b"", 409, "resume_refused"),
    ("POST", "/v1/runs/RUN/heartbeat", b'{"worker_id": 5}', 422, "invalid_request"),
    ("GET", "/v1/runs?limit=0", b"", 400, "invalid_parameter"),
    ("GET", "/v1/runs?limit=abc", b"", 400, "invalid_parameter"),
    ("GET", "/v1/runs?status=sleeping", b"", 400, "invalid_parameter"),
    ("GET", "/v1/runs?order=sideways", b"", 400, "invalid_parameter"),
    ("GET", "/v1/runs?after=%%%", b"", 400, "invalid_cursor"),
    ("GET", "/v1/runs?metadata=novalue", b"", 400, "invalid_parameter"),
    ("GET", "/v1/events?after_event_id=-3", b"", 400, "invalid_parameter"),
    ("GET", "/v1/runs/RUN/state?at_event_id=x", b"", 400, "invalid_parameter"),
    ("DELETE", "/v1/runs/RUN", b"", 405, "method_not_allowed"),
    ("GET", "/v1/nothing-here", b"", 404, "not_found"),
]


@pytest.mark.parametrize(("method", "path", "body", "status_code", "code"), BAD_REQUESTS)
async def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
    client: httpx.AsyncClient, method: str, path: str, body: bytes, status_code: int, code: str
) -> None:
    run = await create(client)
    before = await count_events(client)
    response = await client.request(
        method,
        path.replace("RUN", run["id"]),
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status_code, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert await count_events(client) == before


async def test_an_oversized_body_is_refused(server_factory: Any) -> None:
    live = await server_factory(max_body_bytes=1000)
    async with live.client() as client:
        response = await client.post(
            "/v1/runs", json={"agent_id": "a", "metadata": {"x": "y" * 2000}}
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
        assert (await client.get("/v1/runs")).json()["items"] == []


async def test_ops_endpoints(client: httpx.AsyncClient) -> None:
    await create(client)
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json()["status"] == "ready"
    metrics = (await client.get("/metrics")).text
    assert 'runtrack_runs{status="queued"} 1.0' in metrics
    assert "runtrack_open_streams 0.0" in metrics
    document = (await client.get("/openapi.json")).json()
    assert "/v1/runs/{run_id}/events" in document["paths"]
    verify = (await client.get("/v1/audit/verify")).json()
    assert verify["ok"] is True
    assert verify["events"] == 1
