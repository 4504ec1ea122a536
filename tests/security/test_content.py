"""A role sees a run's content only from events it could receive on a stream; the summary stays.

One run gets messages, journal updates, steps, tool results and checkpoints at each visibility
(``user``, ``operator``, ``internal``) and fails at ``internal``; every read route is then read
with a key of each role.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from starlette.routing import Route

from api.server.auth import Role
from eventstore import NewEvent
from tests.api.conftest import ServerFactory
from tests.conftest import StoreFactory
from tests.receiver import Receiver
from tests.security.conftest import Tenants

pytestmark = pytest.mark.anyio

LEVELS = ("user", "operator", "internal")
SEES = {
    Role.USER: ("user",),
    Role.OPERATOR: ("user", "operator"),
    Role.ADMIN: ("user", "operator", "internal"),
}
"""The visibility levels whose events each role receives on a stream."""
FAST_CALLBACKS = {
    "callback_retry_base": 0.05,
    "callback_poll_seconds": 0.05,
    "leader_interval": 0.05,
    "callback_max_attempts": 1,
}


@dataclass(frozen=True)
class WrittenRun:
    id: str
    conversation_id: str
    last_event_id: int


def event(event_type: str, payload: dict[str, Any], visibility: str) -> dict[str, Any]:
    return {"event_type": event_type, "payload": payload, "visibility": visibility}


def content_at(level: str) -> list[dict[str, Any]]:
    """One of each kind of content event at ``level``, each naming its level."""
    return [
        event("message_created", {"role": "assistant", "content": f"message-{level}"}, level),
        event("journal_updated", {"objective": f"journal-{level}"}, level),
        event(
            "step_completed",
            {"model": f"model-{level}", "prompt_tokens": 1, "completion_tokens": 2},
            level,
        ),
        event(
            "tool_finished",
            {"tool_call_id": f"call-{level}", "name": f"tool-{level}", "result": f"r-{level}"},
            level,
        ),
        event("checkpoint_created", {"checkpoint_id": f"cp-{level}", "kind": "tool_result"}, level),
        event("child_run_started", {"child_run_id": f"child-{level}"}, level),
    ]


async def write_run(tenants: Tenants, *, fail: bool = True) -> WrittenRun:
    """A run with content at every level (oldest ``user``, newest ``internal``), failed at
    ``internal`` with a detail only admins may read."""
    user = tenants.client("org-a", Role.USER)
    worker = tenants.client("org-a", Role.OPERATOR)
    run = (await user.post("/v1/runs", json={"agent_id": "agent"})).json()
    claimed = await worker.post(
        "/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]}
    )
    assert claimed.status_code == 200
    events = [event("journal_updated", {"objective": "journal-user-first"}, "user")]
    events += [item for level in LEVELS for item in content_at(level)]
    if fail:
        events.append(
            event("run_status_changed", {"to": "failed", "detail": "failure-internal"}, "internal")
        )
    appended = await worker.post(f"/v1/runs/{run['id']}/events", json={"events": events})
    assert appended.status_code == 201, appended.text
    last = appended.json()["events"][-1]["id"]
    return WrittenRun(run["id"], run["conversation_id"], last)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so that the read-only cases share one server and one run


@pytest.fixture(scope="module")
async def written(shared_tenants: Tenants) -> WrittenRun:
    """One run for the module's read-only cases: they read it, never change it."""
    return await write_run(shared_tenants)


def expected_content(role: Role) -> dict[str, Any]:
    """The run's content fields as ``role`` must see them."""
    seen = SEES[role]
    admin = role is Role.ADMIN
    return {
        "journal": f"journal-{seen[-1]}",
        "tools_used": [f"tool-{level}" for level in seen],
        "child_run_ids": [f"child-{level}" for level in seen],
        "checkpoint_id": f"cp-{seen[-1]}",
        "checkpoint_kind": "tool_result",
        "detail": "failure-internal" if admin else None,
        "error": "failure-internal" if admin else None,
    }


SUMMARY = {
    "status": "failed",
    "stop_reason": "error",
    "terminal": True,
    "resume_available": True,
    "num_steps": 3,
    "num_messages": 3,
    "prompt_tokens": 3,
    "completion_tokens": 6,
    "total_tokens": 9,
}


def assert_run_seen_by(run: dict[str, Any], role: Role) -> None:
    content = {name: run[name] for name in expected_content(role)}
    content["journal"] = run["journal"]["objective"]
    assert content == expected_content(role), role
    assert {name: run[name] for name in SUMMARY} == SUMMARY, role
    assert run["completed_at"] is not None
    assert run["total_duration_ns"] is not None


async def run_views(client: httpx.AsyncClient, run: WrittenRun) -> dict[str, dict[str, Any]]:
    """The run as every route that answers with a run shows it."""
    listed = (await client.get("/v1/runs", params={"agent_id": "agent"})).json()["items"]
    status = (await client.get(f"/v1/conversations/{run.conversation_id}/agent-status")).json()
    return {
        "get": (await client.get(f"/v1/runs/{run.id}")).json(),
        "list": next(item for item in listed if item["id"] == run.id),
        "state": (await client.get(f"/v1/runs/{run.id}/state")).json(),
        "state_at": (
            await client.get(f"/v1/runs/{run.id}/state", params={"at_event_id": run.last_event_id})
        ).json(),
        "agent_status": status["run"],
    }


@pytest.mark.parametrize("role", list(Role))
async def test_every_run_answer_caps_content_and_keeps_the_summary(
    shared_tenants: Tenants, written: WrittenRun, role: Role
) -> None:
    views = await run_views(shared_tenants.client("org-a", role), written)
    for route, run in views.items():
        assert "content_views" not in run, route
        assert_run_seen_by(run, role)


@pytest.mark.parametrize("role", list(Role))
async def test_the_status_panel_hands_off_only_visible_content(
    shared_tenants: Tenants, written: WrittenRun, role: Role
) -> None:
    client = shared_tenants.client("org-a", role)
    status = await client.get(f"/v1/conversations/{written.conversation_id}/agent-status")
    recovery = status.json()["panel"]["recovery"]
    expected = expected_content(role)
    assert recovery["journal"]["objective"] == expected["journal"]
    assert recovery["error"] == expected["error"]
    assert recovery["can_resume"] is True
    assert status.json()["panel"]["detail"] == expected["detail"]


@pytest.mark.parametrize("role", list(Role))
async def test_messages_are_those_the_role_may_receive(
    shared_tenants: Tenants, written: WrittenRun, role: Role
) -> None:
    answer = await shared_tenants.client("org-a", role).get(f"/v1/runs/{written.id}/messages")
    assert [m["content"] for m in answer.json()["items"]] == [
        f"message-{level}" for level in SEES[role]
    ]


@pytest.mark.parametrize("role", list(Role))
async def test_the_journal_is_the_newest_the_role_may_receive(
    shared_tenants: Tenants, written: WrittenRun, role: Role
) -> None:
    answer = (
        await shared_tenants.client("org-a", role).get(f"/v1/runs/{written.id}/journal")
    ).json()
    objectives = ["journal-user-first", *(f"journal-{level}" for level in SEES[role])]
    assert [entry["objective"] for entry in answer["history"]] == objectives
    assert answer["current"]["objective"] == objectives[-1]


@pytest.mark.parametrize("role", list(Role))
async def test_usage_counts_every_step_and_lists_the_visible_ones(
    shared_tenants: Tenants, written: WrittenRun, role: Role
) -> None:
    answer = (await shared_tenants.client("org-a", role).get(f"/v1/runs/{written.id}/usage")).json()
    assert [step["model"] for step in answer.pop("steps")] == [
        f"model-{level}" for level in SEES[role]
    ]
    assert answer == {
        "prompt_tokens": 3,
        "completion_tokens": 6,
        "total_tokens": 9,
        "num_steps": 3,
    }


@pytest.mark.parametrize("role", list(Role))
async def test_tool_results_are_those_the_role_may_receive(
    shared_tenants: Tenants, written: WrittenRun, role: Role
) -> None:
    answer = await shared_tenants.client("org-a", role).get(f"/v1/runs/{written.id}/tool-results")
    items = answer.json()["items"]
    assert [item["payload"]["result"] for item in items] == [f"r-{level}" for level in SEES[role]]
    assert {item["visibility"] for item in items} == set(SEES[role])


async def test_a_users_cancel_answer_caps_content(shared_tenants: Tenants) -> None:
    running = await write_run(shared_tenants, fail=False)
    answer = await shared_tenants.client("org-a", Role.USER).post(f"/v1/runs/{running.id}/cancel")
    assert answer.status_code == 200
    run = answer.json()
    assert (run["journal"]["objective"], run["tools_used"], run["checkpoint_id"]) == (
        "journal-user",
        ["tool-user"],
        "cp-user",
    )
    assert run["cancel_requested"] is True


async def test_the_claim_hands_the_worker_its_whole_resumption_state(
    shared_tenants: Tenants,
) -> None:
    """The deliberate exception: the claimer resumes from the internal checkpoint."""
    failed = await write_run(shared_tenants)
    worker = shared_tenants.client("org-a", Role.OPERATOR)
    assert (await worker.post(f"/v1/runs/{failed.id}/resume")).status_code == 200
    run = (await worker.get(f"/v1/runs/{failed.id}")).json()
    claim = await worker.post(
        "/v1/runs/claim", json={"worker_id": "w2", "lane_key": run["lane_key"]}
    )
    answer = claim.json()
    assert answer["checkpoint"]["payload"]["checkpoint_id"] == "cp-internal"
    assert {item["payload"]["result"] for item in answer["tool_results"]} == {
        f"r-{level}" for level in LEVELS
    }
    assert answer["run"]["checkpoint_id"] == "cp-internal"


@pytest.fixture
async def callback_tenants(server_factory: ServerFactory) -> AsyncIterator[Tenants]:
    server = await server_factory(heartbeat_seconds=15.0, **FAST_CALLBACKS)
    found = await Tenants(server).create_keys()
    yield found
    await found.aclose()


async def final_attempt(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    async with aconnect_sse(
        client, "GET", "/v1/events", headers={"Accept": "text/event-stream"}
    ) as source:
        async for sse in source.aiter_sse():
            data = json.loads(sse.data) if sse.event == "callback_attempted" else {}
            if data.get("run_id") == run_id and data["payload"]["final"]:
                return dict(data["payload"])
    raise AssertionError("the stream ended before the final attempt")


async def test_callback_errors_reach_operators_never_users(
    callback_tenants: Tenants, receivers: Any
) -> None:
    receiver: Receiver = await receivers(failures=99)
    user = callback_tenants.client("org-a", Role.USER)
    worker = callback_tenants.client("org-a", Role.OPERATOR)
    run = (await user.post("/v1/runs", json={"agent_id": "a", "callback_url": receiver.url})).json()
    await worker.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    end = {"events": [{"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}]}
    assert (await worker.post(f"/v1/runs/{run['id']}/events", json=end)).status_code == 201
    attempt = await final_attempt(worker, run["id"])
    assert attempt["error"] is not None
    seen = {
        role: (await callback_tenants.client("org-a", role).get(f"/v1/runs/{run['id']}")).json()
        for role in Role
    }
    assert seen[Role.USER]["callback_error"] is None
    assert seen[Role.OPERATOR]["callback_error"] == seen[Role.ADMIN]["callback_error"] is not None
    summary = ("callback_status_code", "callback_sent_at", "callback_attempts")
    assert {name: seen[Role.USER][name] for name in summary} == {
        name: seen[Role.ADMIN][name] for name in summary
    }


async def test_a_read_model_filled_before_the_content_views_is_refilled_capped(
    store_factory: StoreFactory, server_factory: ServerFactory
) -> None:
    """As after upgrading a database whose runs table has no ``content_views``: the server
    refills the read model from the log on start, and a user key reads it capped."""
    async with store_factory() as store:  # no projections: only the log is written
        await store.append(
            "org-a",
            "run-before-upgrade",
            [
                NewEvent("run_created", {"agent_id": "agent"}),
                NewEvent("journal_updated", {"objective": "journal-user"}, "user"),
                NewEvent("journal_updated", {"objective": "journal-operator"}, "operator"),
            ],
            conversation_id="conversation",
        )
    server = await server_factory()
    assert server.app.state.store.stale_projections == ["runs"]
    async with server.client(await server.key(Role.USER, "org-a")) as user:
        run = (await user.get("/v1/runs/run-before-upgrade")).json()
    assert run["journal"]["objective"] == "journal-user"


ROUTE_CONTENT = {
    ("POST", "/v1/runs"): "a run, capped",
    ("GET", "/v1/runs"): "runs, capped",
    ("POST", "/v1/runs/claim"): "whole: the worker's resumption state",
    ("GET", "/v1/runs/stats"): "counts only",
    ("GET", "/v1/runs/stats/history"): "counts only",
    ("GET", "/v1/runs/{run_id}"): "a run, capped",
    ("POST", "/v1/runs/{run_id}/events"): "the caller's own events",
    ("GET", "/v1/runs/{run_id}/events"): "events filtered by the capped visibility",
    ("POST", "/v1/runs/{run_id}/heartbeat"): "summary only",
    ("POST", "/v1/runs/{run_id}/cancel"): "a run, capped",
    ("POST", "/v1/runs/{run_id}/resume"): "a run, capped",
    ("POST", "/v1/runs/{run_id}/input"): "a run, capped",
    ("POST", "/v1/conversations/{conversation_id}/cancel"): "a run, capped",
    ("POST", "/v1/runs/{run_id}/tool-results"): "whole: the worker's idempotency envelope",
    ("GET", "/v1/runs/{run_id}/tool-results"): "capped",
    ("GET", "/v1/runs/{run_id}/messages"): "capped",
    ("GET", "/v1/runs/{run_id}/usage"): "steps capped, counters whole",
    ("GET", "/v1/runs/{run_id}/journal"): "capped",
    ("GET", "/v1/runs/{run_id}/state"): "a run, capped",
    ("GET", "/v1/events"): "events filtered by the capped visibility",
    ("GET", "/v1/conversations/{conversation_id}/agent-events"): "events filtered",
    ("GET", "/v1/conversations/{conversation_id}/agent-status"): "a run and panel, capped",
    ("GET", "/v1/me"): "the key itself",
    ("GET", "/v1/audit/verify"): "admin only, counts and hashes",
    ("GET", "/v1/audit/head"): "a global event id and hash, signed: no content",
    ("GET", "/v1/audit/export"): "admin only; other organizations' events as ids and hashes",
}
"""Every ``/v1`` route and what it answers of runs' content (docs/security.md)."""


async def test_every_v1_route_is_classified_for_content(shared_tenants: Tenants) -> None:
    """A route added later must say here what content it answers, and be tested for it."""
    routes = {
        (method, route.path)
        for route in shared_tenants.server.app.routes
        if isinstance(route, Route) and route.path.startswith("/v1")
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert routes == set(ROUTE_CONTENT)
