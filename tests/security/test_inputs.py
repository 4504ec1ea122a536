"""Bad input gets a 4xx that names the limit it broke, and nothing is written (issue 14, item 7).

Each case once answered 500 (or 503): a real server on both backends, real HTTP.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from api.server.auth import Role
from tests.security.conftest import Tenants

pytestmark = pytest.mark.anyio

TOO_BIG = 2**63
DEEP = 1000


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so that the module shares one server per backend


@pytest.fixture
def operator(shared_tenants: Tenants) -> httpx.AsyncClient:
    """Each case makes its own run and compares the log's head before and after, so one server
    per backend serves them all (cases run one at a time, and nothing else writes)."""
    return shared_tenants.client("org-a", Role.OPERATOR)


@pytest.fixture
async def run_id(operator: httpx.AsyncClient) -> str:
    created = await operator.post("/v1/runs", json={"agent_id": "agent-1"})
    assert created.status_code == 201, created.text
    found: str = created.json()["id"]
    return found


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    """A JSON object nested ``depth`` levels, as text (too deep for the encoder to write)."""
    return '{"a":' * depth + '"leaf"' + "}" * depth


async def head(client: httpx.AsyncClient) -> int:
    page = await client.get("/v1/events", params={"limit": 1})
    assert page.status_code == 200, page.text
    found: int = page.json()["head"]
    return found


async def post_text(client: httpx.AsyncClient, path: str, text: str) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return await client.post(path, content=text.encode(), headers=headers)


def refused(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    for word in words:
        assert word in message, message
    return message


async def test_a_payload_nested_a_thousand_deep_is_refused_naming_the_depth(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    before = await head(operator)
    event = '{"event_type":"custom.deep","payload":' + nested_text(DEEP) + "}"
    response = await post_text(operator, f"/v1/runs/{run_id}/events", f'{{"events":[{event}]}}')
    refused(response, 422, "64")
    assert response.json()["error"]["code"] == "json_too_deep"
    assert await head(operator) == before


async def test_a_payload_nested_just_over_the_limit_is_refused(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    before = await head(operator)
    event = {"event_type": "custom.deep", "payload": nested(300)}
    response = await operator.post(f"/v1/runs/{run_id}/events", json={"events": [event]})
    refused(response, 422, "64")
    assert await head(operator) == before


async def test_metadata_nested_past_the_serializer_depth_is_refused(
    operator: httpx.AsyncClient,
) -> None:
    before = await head(operator)
    body = {"agent_id": "agent-1", "metadata": nested(300)}
    refused(await operator.post("/v1/runs", json=body), 422, "64")
    assert await head(operator) == before


async def test_a_tool_result_nested_too_deep_is_refused(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    before = await head(operator)
    body = {"tool_call_id": "t1", "name": "search", "result": nested(300)}
    refused(await operator.post(f"/v1/runs/{run_id}/tool-results", json=body), 422, "64")
    assert await head(operator) == before


@pytest.mark.parametrize(
    "escape", ["\\ud800", "\\udfff", "\\ud800x", "\\udc00\\ud800"], ids=["high", "low", "x", "pair"]
)
async def test_a_lone_surrogate_in_a_payload_is_refused_where_the_body_is_read(
    operator: httpx.AsyncClient, run_id: str, escape: str
) -> None:
    before = await head(operator)
    event = '{"event_type":"custom.text","payload":{"text":"' + escape + '"}}'
    response = await post_text(operator, f"/v1/runs/{run_id}/events", f'{{"events":[{event}]}}')
    refused(response, 422, "surrogate")
    assert response.json()["error"]["code"] == "invalid_text"
    assert await head(operator) == before


async def test_a_lone_surrogate_in_a_key_or_a_message_is_refused(
    operator: httpx.AsyncClient,
) -> None:
    before = await head(operator)
    message = '{"agent_id":"agent-1","message":"hello \\ud800"}'
    refused(await post_text(operator, "/v1/runs", message), 422, "surrogate")
    key = '{"agent_id":"agent-1","metadata":{"\\udbff":1}}'
    refused(await post_text(operator, "/v1/runs", key), 422, "surrogate")
    assert await head(operator) == before


async def test_a_surrogate_pair_is_a_character_and_is_kept(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    event = '{"event_type":"custom.text","payload":{"text":"\\ud83d\\ude00"}}'
    response = await post_text(operator, f"/v1/runs/{run_id}/events", f'{{"events":[{event}]}}')
    assert response.status_code == 201, response.text
    assert response.json()["events"][0]["payload"] == {"text": "\U0001f600"}


@pytest.mark.parametrize("name", ["after_event_id", "limit"])
async def test_an_integer_past_63_bits_in_a_log_page_is_refused(
    operator: httpx.AsyncClient, run_id: str, name: str
) -> None:
    for path in ("/v1/events", f"/v1/runs/{run_id}/events"):
        response = await operator.get(path, params={name: str(TOO_BIG)})
        refused(response, 400, name)


@pytest.mark.parametrize("name", ["after_event_id", "after_sequence"])
async def test_an_integer_past_63_bits_as_a_stream_cursor_is_refused(
    operator: httpx.AsyncClient, run_id: str, name: str
) -> None:
    headers = {"Accept": "text/event-stream"}
    response = await operator.get(
        f"/v1/runs/{run_id}/events", params={name: str(TOO_BIG)}, headers=headers
    )
    refused(response, 400, name, str(TOO_BIG - 1))


async def test_an_integer_past_63_bits_in_a_list_cursor_is_refused(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    cursor = base64.urlsafe_b64encode(f"r{TOO_BIG}".encode()).decode().rstrip("=")
    for name in ("after", "before"):
        response = await operator.get("/v1/runs", params={name: cursor})
        refused(response, 400, "cursor")


async def test_an_integer_past_63_bits_in_time_travel_or_expected_sequence_is_refused(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    before = await head(operator)
    state = await operator.get(f"/v1/runs/{run_id}/state", params={"at_event_id": str(TOO_BIG)})
    refused(state, 400, "at_event_id", str(TOO_BIG - 1))
    body = {"events": [{"event_type": "custom.x"}], "expected_sequence": TOO_BIG}
    refused(await operator.post(f"/v1/runs/{run_id}/events", json=body), 422, "expected_sequence")
    assert await head(operator) == before


async def test_a_counter_past_63_bits_in_a_core_payload_is_refused(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    before = await head(operator)
    step = {"event_type": "step_completed", "payload": {"prompt_tokens": TOO_BIG}}
    response = await operator.post(f"/v1/runs/{run_id}/events", json={"events": [step]})
    refused(response, 422, "prompt_tokens")
    assert await head(operator) == before


async def test_thousands_of_metadata_filters_are_refused_naming_the_limit(
    operator: httpx.AsyncClient, run_id: str
) -> None:
    params = httpx.QueryParams([("metadata", f"k{i}=v") for i in range(2000)])
    for path in ("/v1/runs", "/v1/runs/stats", "/v1/runs/stats/history"):
        response = await operator.get(path, params=params)
        refused(response, 400, "metadata", "32")


async def test_the_limits_are_in_the_openapi_document(operator: httpx.AsyncClient) -> None:
    document = (await operator.get("/openapi.json")).json()
    limits = document["info"]["x-runtrack-limits"]
    assert limits["max_json_depth"] == 64
    assert limits["max_metadata_filters"] == 32
    assert limits["max_body_bytes"] == 1_048_576
    assert limits["max_integer"] == TOO_BIG - 1
    append = document["components"]["schemas"]["AppendEventsBody"]
    assert append["properties"]["events"]["maxItems"] == 1000
    listing = {p["name"]: p for p in document["paths"]["/v1/runs"]["get"]["parameters"]}
    assert listing["metadata"]["schema"]["maxItems"] == 32
    events = document["paths"]["/v1/events"]["get"]["parameters"]
    cursor = next(p for p in events if p["name"] == "after_event_id")
    assert cursor["schema"]["maximum"] == TOO_BIG - 1


@pytest.mark.parametrize(
    "path",
    [
        "/v1/runs/%00",
        "/v1/runs/a%00b/events",
        "/v1/runs?agent_id=%00",
        "/v1/runs?metadata=a%00=b",
        "/v1/runs/stats?lane_key=%00",
        "/v1/runs/stats/history?agent_id=%00",
        "/v1/runs?run_id_prefix=a%00",
        "/v1/audit/verify?run_id=%00",
    ],
)
async def test_nul_in_a_path_or_query_is_refused(shared_tenants: Tenants, path: str) -> None:
    """PostgreSQL cannot hold NUL in text (it answered 503 there); both backends refuse it."""
    response = await shared_tenants.client("org-a", Role.ADMIN).get(path)
    refused(response, 400, "NUL")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/runs", {"agent_id": "a\u0000b"}),
        ("/v1/runs", {"agent_id": "a", "lane_key": "\u0000"}),
        ("/v1/runs", {"agent_id": "a", "parent_run_id": "\u0000"}),
        ("/v1/runs/claim", {"worker_id": "w\u0000"}),
        ("/v1/runs/claim", {"worker_id": "w", "agent_id": "\u0000"}),
    ],
)
async def test_nul_in_an_identifier_is_refused(
    operator: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    before = await head(operator)
    response = await operator.post(path, json=body)
    assert response.status_code == 422, response.text
    assert await head(operator) == before


@pytest.mark.parametrize(
    "event",
    [
        {
            "event_type": "checkpoint_created",
            "payload": {"checkpoint_id": "\u0000", "kind": "input"},
        },
        {"event_type": "tool_started", "payload": {"tool_call_id": "c\u0000", "name": "t"}},
    ],
)
async def test_nul_in_a_payload_is_never_a_server_error(
    operator: httpx.AsyncClient, run_id: str, event: dict[str, Any]
) -> None:
    """Where a payload names something the read model keeps as text, PostgreSQL cannot hold
    NUL: the append is a 422 there (and nothing written), stored as it is on SQLite."""
    before = await head(operator)
    response = await operator.post(f"/v1/runs/{run_id}/events", json={"events": [event]})
    assert response.status_code in (201, 422), response.text
    if response.status_code == 422:
        assert await head(operator) == before
