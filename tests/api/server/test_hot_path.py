"""The hot path (``api/server/hot_path.py``) answers every append as the full Starlette stack
does, refusals included, and steps aside when the app has middleware of its own."""

from __future__ import annotations

import re
import socket

import pytest

from api.server.auth import Role
from tests.api.conftest import LiveServer, ServerFactory

pytestmark = pytest.mark.anyio

TICK = {"event_type": "custom.tick", "payload": {"n": 1}}
_IDS = re.compile(r'(run|conv)-[0-9a-f]{32}|"id":\d+|\d{4}-\d\d-\d\dT[0-9:.+]+|[0-9a-f]{64}')


async def _answers(live: LiveServer) -> list[tuple[int, str, str | None]]:
    """The same appends, good and bad, on a new run: status, body (ids masked), challenge."""
    operator, user = await live.key(Role.OPERATOR), await live.key(Role.USER)
    async with (
        live.client(operator) as client,
        live.client(user) as reader,
        live.client() as anonymous,
    ):
        run = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        path = f"/v1/runs/{run}/events"
        calls = [
            client.post(path, json={"events": [TICK]}),
            client.post(path, json={"events": [TICK], "idempotency_key": f"key-{run}"}),
            client.post(path, json={"events": [TICK, TICK], "idempotency_key": f"key-{run}"}),
            client.post(path, json={"events": [TICK], "expected_sequence": 0}),
            client.post(path, content=b"{not json"),
            client.post(path, content=b"[1, 2]"),
            client.post(path, content=b'{"events": [{"event_type": "custom.x", "payload": NaN}]}'),
            client.post(
                path,
                content=b'{"events": [{"event_type": "custom.x", "payload": {"s": "\\ud800"}}]}',
            ),
            client.post(
                path, content=b'{"events": [{"event_type": "custom.x", "payload": {"n": 1e999}}]}'
            ),
            client.post(path, content=b'{"events": ' + b"[" * 70 + b"]" * 70 + b"}"),
            client.post(path, json={"events": []}),
            client.post(path, json={"events": [{"event_type": "run_status_changed"}]}),
            client.post(path, json={"events": [{"event_type": "sleeping", "payload": {}}]}),
            client.post(path, content=b"x" * 2_000_000),
            client.post("/v1/runs/run-nope/events", json={"events": [TICK]}),
            reader.post(path, json={"events": [TICK]}),
            anonymous.post(path, json={"events": [TICK]}),
            client.post(path, json={"events": [TICK]}, headers={"Authorization": "Bearer rtk_x_y"}),
        ]
        answers = []
        for call in calls:
            response = await call
            masked = _IDS.sub("ID", response.text)
            answers.append((response.status_code, masked, response.headers.get("www-authenticate")))
        return answers


async def test_the_hot_path_answers_as_the_full_stack(server_factory: ServerFactory) -> None:
    live = await server_factory()
    hot = await _answers(live)
    assert live.app.hot_path is not None  # type: ignore[attr-defined]
    live.app.hot_path = None  # type: ignore[attr-defined]  # every request through Starlette
    assert await _answers(live) == hot
    statuses = [status for status, _, _ in hot]
    assert statuses[:14] == [201, 201, 409, 409, 400, 422, 400, 422, 400, 422, 422, 422, 422, 413]
    assert statuses[14:] == [404, 403, 401, 401]
    assert hot[-1][2] == "Bearer"


async def test_middleware_of_the_apps_own_turns_the_hot_path_off(
    server_factory: ServerFactory,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]
    live = await server_factory(metrics_listen=f"127.0.0.1:{metrics_port}")
    async with live.client(await live.key(Role.OPERATOR)) as client:
        run = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        answer = await client.post(f"/v1/runs/{run}/events", json={"events": [TICK]})
    assert answer.status_code == 201, answer.text
    assert live.app.hot_path is None  # type: ignore[attr-defined]
