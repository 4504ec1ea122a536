"""The server's answers are the client's wire models, field for field: one wire format.

Every documented operation is called against a live server, and each answer is read through
the model ``/openapi.json`` names for its status: a field the model lacks, one it holds that
the answer leaves out, or a value of another type fails. The app's routes are the document's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from api.client.models import AuditReport, Usage
from api.server.openapi import OPERATIONS
from tests.security.test_routes import app_routes

pytestmark = pytest.mark.anyio

MAY_OMIT: dict[type[BaseModel], set[str]] = {
    AuditReport: {"first_bad_event_id", "reason", "signed_heads", "signed_through", "kept_heads"}
}
"""Fields an answer leaves out on purpose (the chain's break, when there is none; what signed
heads showed, when none were checked; kept heads, when none was given)."""
UNDOCUMENTED = {
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/static/{path}"),
    ("POST", "/demo/callbacks"),
}
"""Routes outside the API document: the scrape, the document itself, the dashboard's files."""


def assert_is(model: type[BaseModel], data: Any) -> None:
    """``data`` is exactly ``model``: nothing more, nothing less, nothing coerced, at any depth."""
    parsed = model.model_validate(data, strict=True)
    assert parsed.model_dump(mode="json", exclude_unset=True) == data, model.__name__
    for found in _models_in(parsed):
        missing = set(type(found).model_fields) - found.model_fields_set
        assert missing <= MAY_OMIT.get(type(found), set()), f"{type(found).__name__}: {missing}"


def _models_in(value: Any) -> Iterator[BaseModel]:
    if isinstance(value, BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from _models_in(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            yield from _models_in(item)


def operation(method: str, path: str) -> Any:
    return next(op for op in OPERATIONS if (op.method, op.path) == (method.lower(), path))


class Caller:
    """Calls operations by their documented path and checks each answer against its model."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.called: set[tuple[str, str]] = set()
        self.values: dict[str, str] = {}

    async def __call__(
        self, method: str, path: str, body: Any = None, query: str = "", status: int = 200
    ) -> Any:
        url = path.format(**self.values) + (f"?{query.format(**self.values)}" if query else "")
        answer = await self.client.request(method, url, json=body)
        assert answer.status_code == status, f"{method} {url}: {answer.text}"
        answers = operation(method, path).answers()
        assert status in answers, f"{method} {path} answers {status}, which is not documented"
        self.called.add((method, path))
        model = answers[status]
        if model is None:
            assert answer.content == b""
            return None
        assert_is(model, answer.json())
        return answer.json()


RUN = "/v1/runs/{run_id}"
CHECKPOINT = {"checkpoint_id": "c1", "kind": "input", "state": {"n": 1}}
STEP = {"model": "m", "prompt_tokens": 3, "completion_tokens": 2, "duration_ms": 12, "ttft_ns": 5}
WORK = [
    {"event_type": "checkpoint_created", "payload": CHECKPOINT},
    {"event_type": "tool_started", "payload": {"tool_call_id": "t1", "name": "search"}},
    {"event_type": "step_completed", "payload": STEP},
    {"event_type": "journal_updated", "payload": {"objective": "o", "blockers": ["b"]}},
    {"event_type": "message_created", "payload": {"role": "assistant", "content": "ok"}},
]
TOOL = {"tool_call_id": "t1", "name": "search", "result": {"n": 1}}
ASK = [
    {"event_type": "human_input_requested", "payload": {"question_id": "q-1", "question": "ok?"}},
    {"event_type": "metadata_updated", "payload": {"patch": {"progress": 1, "total": 3}}},
    {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}},
]
FAIL = {"event_type": "run_status_changed", "payload": {"to": "failed", "detail": "boom"}}


async def working_run(call: Caller) -> None:
    """A run created, claimed, worked on and asked about: every read and write of a live run."""
    created = await call("POST", "/v1/runs", {"agent_id": "a", "message": "hi"}, status=201)
    call.values.update(run_id=created["id"], conversation_id=created["conversation_id"])
    claimed = await call("POST", "/v1/runs/claim", {"worker_id": "w"})
    assert claimed["run"]["id"] == created["id"]
    await call("POST", "/v1/runs/claim", {"worker_id": "w"}, status=204)
    await call("POST", f"{RUN}/events", {"events": WORK}, status=201)
    await call("POST", f"{RUN}/heartbeat", {"worker_id": "w"})
    await call("POST", f"{RUN}/tool-results", TOOL, status=201)
    assert (await call("POST", f"{RUN}/tool-results", TOOL))["replayed"] is True
    for path in ("tool-results", "messages", "usage", "journal", "state"):
        await call("GET", f"{RUN}/{path}")
    await call("GET", f"{RUN}/state", query="at_event_id=1")
    await call("GET", "/v1/conversations/{conversation_id}/agent-status")


async def test_every_answer_is_its_model(client: httpx.AsyncClient) -> None:
    call = Caller(client)
    await working_run(call)
    await call("POST", f"{RUN}/events", {"events": ASK}, status=201)
    asking = await call("GET", "/v1/conversations/{conversation_id}/agent-status")
    assert (await call("POST", f"{RUN}/input", {"response": "yes"}))["status"] == "queued"
    again = await call("POST", "/v1/runs/claim", {"worker_id": "w"})
    await call("POST", f"{RUN}/events", {"events": [FAIL]}, status=201)
    ended = await call("GET", RUN)
    panel = await call("GET", "/v1/conversations/{conversation_id}/agent-status")
    await call("POST", f"{RUN}/resume")
    await call("POST", f"{RUN}/cancel", {})
    await call("POST", "/v1/conversations/{conversation_id}/cancel", {})
    paths = ("/v1/runs", "/v1/runs/stats", "/v1/runs/stats/history", f"{RUN}/events")
    for path in (*paths, "/v1/events", "/v1/me"):
        await call("GET", path)
    await call("GET", "/v1/audit/verify")
    await call("GET", "/v1/audit/verify", query="run_id={run_id}")
    await call("GET", "/v1/audit/verify", query=f"head=1:{'0' * 64}")
    await call("GET", "/v1/audit/head", status=404)  # 200 in tests/security/test_signed_heads.py
    await call("GET", "/v1/audit/export", query="visibility=internal")
    await call("GET", "/healthz")
    await call("GET", "/readyz")
    call.values["run_id"] = "run-none"
    await call("GET", RUN, status=404)
    documented = {(op.method.upper(), op.path) for op in OPERATIONS if op.returns is not None}
    assert documented - call.called == set(), "call each operation that answers JSON"
    assert (ended["checkpoint_id"], ended["tools_used"]) == ("c1", ["search"])
    assert panel["panel"]["recovery"]["can_resume"] is True
    assert asking["panel"]["question"]["question_id"] == "q-1"
    assert [e["payload"]["response"] for e in again["human_inputs"]] == ["yes"]


def test_the_apps_routes_are_the_documents_operations() -> None:
    documented = {(op.method.upper(), op.path) for op in OPERATIONS}
    assert app_routes() - UNDOCUMENTED == documented


def test_the_check_refuses_an_extra_a_missing_or_a_coerced_field() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "num_steps": 1}
    step = {"event_id": 4, "created_at": "2026-01-01T00:00:00+00:00", **STEP, "duration_ms": 12.0}
    assert_is(Usage, {**usage, "steps": [step]})
    unsent = {name: value for name, value in step.items() if name != "ttft_ns"}
    for wrong in ({**step, "extra": 1}, unsent):
        with pytest.raises(AssertionError):
            assert_is(Usage, {**usage, "steps": [wrong]})
    with pytest.raises(ValidationError):
        assert_is(Usage, {**usage, "num_steps": "1", "steps": []})
