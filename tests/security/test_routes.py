"""Every route, two organizations, every role: the tenant and role boundaries hold everywhere.

The table is checked against the app's own route list, so a route added without an isolation
case fails ``test_every_route_has_a_case``. For each case, each organization's keys of each role
call it on their own run (or conversation), on the other organization's, and on an unknown one:
a role below the route's is 403, a foreign or unknown run is 404, and no answer carries the
other organization's ids or content.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from httpx_sse import aconnect_sse
from starlette.routing import Mount, Route

from api.server.app import create_app
from api.server.auth import Role
from api.server.settings import Settings
from tests.security.conftest import ORGANIZATIONS, Tenants

pytestmark = pytest.mark.anyio

Scope = Literal["run", "conversation", "organization", "public"]
SSE = {"Accept": "text/event-stream"}
OK = frozenset({200})


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    role: Role | None
    """The least role the route takes; None for a route that needs no key."""
    scope: Scope
    body: dict[str, Any] | None = None
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ok: frozenset[int] = OK
    """What the route may answer to an allowed key on its own run (409: a state conflict)."""

    @property
    def name(self) -> str:
        suffix = " (SSE)" if self.headers else (f" ?{self.query}" if self.query else "")
        return f"{self.method} {self.path}{suffix}"

    @property
    def streams(self) -> bool:
        return bool(self.headers)


MESSAGE = {"event_type": "message_created", "payload": {"role": "assistant", "content": "hi"}}
TOOL = {"tool_call_id": "call-1", "name": "search", "status": "success", "result": {"n": 1}}
RUN = "/v1/runs/{run_id}"
CONVERSATION = "/v1/conversations/{conversation_id}"

CASES = [
    Case("POST", "/v1/runs", Role.USER, "organization", {"agent_id": "agent"}, ok=frozenset({201})),
    Case("GET", "/v1/runs", Role.USER, "organization"),
    Case("POST", "/v1/runs/claim", Role.OPERATOR, "organization", {"worker_id": "w"},
         ok=frozenset({200, 204})),
    Case("GET", "/v1/runs/stats", Role.USER, "organization"),
    Case("GET", "/v1/runs/stats/history", Role.USER, "organization"),
    Case("GET", RUN, Role.USER, "run"),
    Case("POST", f"{RUN}/events", Role.OPERATOR, "run", {"events": [MESSAGE]},
         ok=frozenset({201})),
    Case("GET", f"{RUN}/events", Role.USER, "run"),
    Case("GET", f"{RUN}/events", Role.USER, "run", headers=SSE),
    Case("POST", f"{RUN}/heartbeat", Role.OPERATOR, "run", {"worker_id": "w"}),
    Case("POST", f"{RUN}/cancel", Role.USER, "run", {}),
    Case("POST", f"{RUN}/resume", Role.OPERATOR, "run", ok=frozenset({409})),
    Case("POST", f"{RUN}/input", Role.USER, "run", {"response": "yes"}, ok=frozenset({409})),
    Case("POST", f"{RUN}/tool-results", Role.OPERATOR, "run", TOOL, ok=frozenset({201})),
    Case("GET", f"{RUN}/tool-results", Role.USER, "run"),
    Case("GET", f"{RUN}/messages", Role.USER, "run"),
    Case("GET", f"{RUN}/usage", Role.USER, "run"),
    Case("GET", f"{RUN}/journal", Role.USER, "run"),
    Case("GET", f"{RUN}/state", Role.USER, "run"),
    Case("GET", f"{RUN}/state", Role.USER, "run", query="at_event_id={event_id}"),
    Case("GET", "/v1/events", Role.USER, "organization"),
    Case("GET", "/v1/events", Role.USER, "organization", headers=SSE),
    Case("GET", f"{CONVERSATION}/agent-events", Role.USER, "conversation", headers=SSE),
    Case("GET", f"{CONVERSATION}/agent-events", Role.USER, "run", query="run_id={run_id}",
         headers=SSE),
    Case("GET", f"{CONVERSATION}/agent-status", Role.USER, "conversation"),
    Case("POST", f"{CONVERSATION}/cancel", Role.USER, "conversation", {}),
    Case("GET", "/v1/me", Role.USER, "organization"),
    Case("GET", "/v1/audit/verify", Role.ADMIN, "organization"),
    Case("GET", "/v1/audit/verify", Role.ADMIN, "run", query="run_id={run_id}"),
    Case("GET", "/v1/audit/verify", Role.ADMIN, "organization", query=f"head=1:{'0' * 64}"),
    Case("GET", "/v1/audit/head", Role.USER, "organization", ok=frozenset({200, 404})),
    Case("GET", "/v1/audit/export", Role.ADMIN, "organization"),
    Case("GET", "/v1/audit/export", Role.ADMIN, "organization", query="visibility=internal"),
    Case("GET", "/healthz", None, "public"),
    Case("GET", "/readyz", None, "public"),
    Case("GET", "/metrics", None, "public", ok=frozenset({404})),  # the operator's: not to keys
    Case("GET", "/openapi.json", None, "public"),
    Case("GET", "/", None, "public"),
    Case("GET", "/static/{path}", None, "public", query="", ok=OK),
    Case("POST", "/demo/callbacks", None, "public", {"run_id": "r"}),
]  # fmt: skip


def app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, the demo's included."""
    found: set[tuple[str, str]] = set()
    for route in create_app(Settings(demo=True)).routes:
        if isinstance(route, Mount):
            found.add(("GET", f"{route.path}/{{path}}"))
        elif isinstance(route, Route):
            found |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
    return found


def test_every_route_has_a_case() -> None:
    covered = {(case.method, case.path) for case in CASES}
    assert app_routes() - covered == set(), "add an isolation case for each new route"
    assert covered - app_routes() == set(), "a case names a route the app no longer has"


@dataclass
class Tenant:
    """One organization's fixtures: a running run with content, its conversation, markers."""

    organization: str
    run_id: str
    conversation_id: str
    secret: str
    event_id: int
    """The run's last event when it was set up (a point its state can be read at)."""

    @property
    def markers(self) -> list[str]:
        return [self.run_id, self.conversation_id, self.secret, f"agent-{self.secret}"]


async def running_run(tenants: Tenants, organization: str, secret: str) -> dict[str, Any]:
    """A run of ``organization`` that a worker has claimed, with a message of its own."""
    operator = tenants.client(organization, Role.OPERATOR)
    agent = f"agent-{secret}"
    created = await operator.post("/v1/runs", json={"agent_id": agent, "message": secret})
    assert created.status_code == 201, created.text
    claimed = await operator.post("/v1/runs/claim", json={"worker_id": "w", "agent_id": agent})
    assert claimed.status_code == 200, claimed.text
    run: dict[str, Any] = claimed.json()["run"]
    return run


async def tenant(tenants: Tenants, organization: str) -> Tenant:
    secret = f"secret-{organization}-{uuid.uuid4().hex[:8]}"
    run = await running_run(tenants, organization, secret)
    return Tenant(organization, run["id"], run["conversation_id"], secret, run["last_event_id"])


def target(case: Case, owner: Tenant, run_id: str, conversation_id: str) -> str:
    path = case.path.format(run_id=run_id, conversation_id=conversation_id, path="app.js")
    query = case.query.format(run_id=run_id, event_id=owner.event_id)
    return f"{path}?{query}" if query else path


async def call(client: httpx.AsyncClient, case: Case, url: str) -> tuple[int, str]:
    """The answer's status and, for a finite answer, its body (a stream is closed at once)."""
    if case.streams:
        async with client.stream(case.method, url, headers=case.headers) as answer:
            return answer.status_code, "" if answer.status_code == 200 else await _text(answer)
    answer = await client.request(case.method, url, json=case.body)
    return answer.status_code, answer.text


async def _text(answer: httpx.Response) -> str:
    return (await answer.aread()).decode()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def world(shared_tenants: Tenants) -> dict[str, Tenant]:
    return {
        organization: await tenant(shared_tenants, organization) for organization in ORGANIZATIONS
    }


def other(organization: str) -> str:
    return next(o for o in ORGANIZATIONS if o != organization)


SERVED = [case for case in CASES if not case.path.startswith("/demo/")]
"""The demo's own callback receiver is mounted only by ``serve --demo``."""


@pytest.mark.parametrize("case", SERVED, ids=lambda case: case.name)
async def test_roles_and_tenants(
    case: Case, shared_tenants: Tenants, world: dict[str, Tenant]
) -> None:
    """Every role of both organizations on its own run, the other's and an unknown one; no
    answer carries the other organization's ids or content; no key is 401."""
    tenants = shared_tenants
    for organization in ORGANIZATIONS:
        for role in Role:
            await check_own(case, tenants, world, organization, role)
            if case.scope in ("run", "conversation"):
                await check_foreign(case, tenants, world, organization, role)
    if case.role is not None:
        mine = world[ORGANIZATIONS[0]]
        async with tenants.server.client() as anonymous:
            status, _ = await call(
                anonymous, case, target(case, mine, mine.run_id, mine.conversation_id)
            )
        assert status == 401, f"no key on {case.name}: {status}"


async def check_own(
    case: Case, tenants: Tenants, world: dict[str, Tenant], organization: str, role: Role
) -> None:
    """On its own run (a fresh one for a route that changes it), a key below the route's role is
    403; one at or above it passes, and its answer holds nothing of the other organization."""
    mine = world[organization] if case.method == "GET" else await tenant(tenants, organization)
    url = target(case, mine, mine.run_id, mine.conversation_id)
    status, body = await call(tenants.client(organization, role), case, url)
    allowed = case.role is None or role >= case.role
    expected = case.ok if allowed else frozenset({403})
    assert status in expected, f"{organization} {role.label} {case.name}: {status} {body}"
    leaked = [marker for marker in world[other(organization)].markers if marker in body]
    assert leaked == [], f"{organization} {role.label} {case.name} shows {leaked}"


async def check_foreign(
    case: Case, tenants: Tenants, world: dict[str, Tenant], organization: str, role: Role
) -> None:
    """Another organization's run, or an unknown one, is 404 (or 403 below the route's role);
    another organization's conversation answers as an unknown one does."""
    theirs = world[other(organization)]
    client = tenants.client(organization, role)
    if case.scope == "run":
        for run_id in (theirs.run_id, f"run-unknown-{uuid.uuid4().hex[:8]}"):
            url = target(case, theirs, run_id, theirs.conversation_id)
            status, body = await call(client, case, url)
            expected = {404} if case.role is None or role >= case.role else {403, 404}
            assert status in expected, f"{organization} {role.label} {case.name}: {status} {body}"
        return
    unknown = f"conv-unknown-{uuid.uuid4().hex[:8]}"
    foreign = await call(client, case, target(case, theirs, theirs.run_id, theirs.conversation_id))
    missing = await call(client, case, target(case, theirs, theirs.run_id, unknown))
    assert foreign[0] == missing[0], f"{case.name}: {foreign} against {missing}"
    assert foreign[1].replace(theirs.conversation_id, unknown) == missing[1]


async def test_stats_count_only_the_callers_runs(tenants: Tenants) -> None:
    for organization in ORGANIZATIONS:  # a server of its own: the counts must be exact
        await tenant(tenants, organization)
    await running_run(tenants, "org-b", "extra")
    for organization, expected in (("org-a", 1), ("org-b", 2)):
        stats = await tenants.client(organization, Role.ADMIN).get("/v1/runs/stats")
        assert stats.json()["total"] == expected
        history = await tenants.client(organization, Role.USER).get("/v1/runs/stats/history")
        assert sum(history.json()["samples"][-1]["by_status"].values()) == expected


SHARED_CONVERSATION = "conv-shared-by-both"


@pytest.mark.parametrize(
    "path", ["/v1/events", f"/v1/conversations/{SHARED_CONVERSATION}/agent-events"]
)
async def test_streams_carry_only_the_callers_events(path: str, tenants: Tenants) -> None:
    """Both organizations write to a conversation of the same id; each stream, replayed from
    the start up to its own organization's last event, holds none of the other's."""
    for organization in ORGANIZATIONS:
        body = {"agent_id": "a", "conversation_id": SHARED_CONVERSATION, "message": organization}
        created = await tenants.client(organization, Role.USER).post("/v1/runs", json=body)
        assert created.status_code == 201
    closing = await tenants.client("org-a", Role.USER).post(
        "/v1/runs", json={"agent_id": "a", "conversation_id": SHARED_CONVERSATION}
    )
    last_id = closing.json()["last_event_id"]
    seen = await stream_until(tenants.client("org-a", Role.ADMIN), path, last_id)
    assert {event["organization_id"] for event in seen} == {"org-a"}
    assert all("org-b" not in json.dumps(event) for event in seen)


async def test_a_conversation_cancel_acts_only_on_the_callers_run(tenants: Tenants) -> None:
    """Both organizations hold a run in a conversation of the same id: each cancel flags its
    own organization's run only, and with none left the other's is no active run for it."""
    runs = {}
    for organization in ORGANIZATIONS:
        operator = tenants.client(organization, Role.OPERATOR)
        body = {"agent_id": f"agent-{organization}", "conversation_id": SHARED_CONVERSATION}
        runs[organization] = (await operator.post("/v1/runs", json=body)).json()["id"]
        claimed = await operator.post(
            "/v1/runs/claim", json={"worker_id": "w", "agent_id": f"agent-{organization}"}
        )
        assert claimed.json()["run"]["id"] == runs[organization]
    user = tenants.client("org-a", Role.USER)
    cancelled = await user.post(f"/v1/conversations/{SHARED_CONVERSATION}/cancel")
    assert cancelled.json()["id"] == runs["org-a"]
    theirs = await tenants.client("org-b", Role.ADMIN).get(f"/v1/runs/{runs['org-b']}")
    assert theirs.json()["cancel_requested"] is False


async def stream_until(client: httpx.AsyncClient, path: str, last_id: int) -> list[Any]:
    seen: list[Any] = []
    params = {"after_event_id": "0", "visibility": "internal"}
    async with aconnect_sse(client, "GET", path, params=params) as source:
        async for message in source.aiter_sse():
            if message.data:
                seen.append(json.loads(message.data))
            if message.id and int(message.id) >= last_id:
                return seen
    raise AssertionError("the stream ended before the caller's last event")
