"""Keys: a revoked database stays closed, revocation reaches every server and ends streams,
and no key is ever written to a log (issue 14, findings 3-5)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
from httpx_sse import EventSource, aconnect_sse

from api.server.app import create_app
from api.server.auth import KeyRing, Role
from api.server.log_redaction import redact
from api.server.revocation import KeyWatch, OpenStreams
from api.server.settings import Settings
from eventstore import WriteContext
from tests.api.conftest import ServerFactory
from tests.conftest import StoreFactory
from tests.e2e.conftest import ProcessFactory, ServerProcess, create_key, free_port, server_process
from tests.waiting import eventually

__all__ = ["server_process"]

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}
PATIENCE = 15.0
"""How long a condition may take to hold; revocation is meant to take a fraction of a second,
and the verified-key cache this replaces held a key for 30 s."""


def key_id_of(token: str) -> str:
    return token.split("_")[1]


async def revoke_with_cli(database: str, key_id: str) -> None:
    """``runtrack keys revoke``, a real process writing the database directly."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", "keys", "revoke", key_id, "--database", database),
        stdout=asyncio.subprocess.PIPE,
    )
    out = (await process.communicate())[0].decode()
    assert process.returncode == 0, out
    assert f"revoked {key_id}" in out


async def until_status(client: httpx.AsyncClient, path: str, status: int) -> None:
    async def poll() -> None:
        while (await client.get(path)).status_code != status:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), PATIENCE)


@asynccontextmanager
async def open_events(client: httpx.AsyncClient, **params: str) -> AsyncIterator[EventSource]:
    """The firehose stream, once the server has sent its prelude (the stream is registered)."""
    async with aconnect_sse(client, "GET", "/v1/events", headers=SSE, params=params) as source:
        assert source.response.status_code == 200
        yield source


async def stream_ends(source: EventSource) -> list[str]:
    """Read the stream to its end (within the patience); the comments and events seen."""

    async def drain() -> list[str]:
        return [line async for line in source.response.aiter_lines() if line]

    return await asyncio.wait_for(drain(), PATIENCE)


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """What the in-process server logs, uvicorn's errors included (its logger does not
    propagate): an ended stream must end its response, not leave uvicorn an unfinished one."""
    uvicorn_errors = logging.getLogger("uvicorn.error")
    uvicorn_errors.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        uvicorn_errors.removeHandler(caplog.handler)


# Finding 3: revoking the last key does not reopen the server.


async def test_revoking_every_key_keeps_the_server_closed(server_factory: ServerFactory) -> None:
    server = await server_factory()
    token = await server.key(Role.ADMIN)
    assert await server.keys.revoke(key_id_of(token))
    async with server.client() as anonymous, server.client(token) as revoked:
        for client in (anonymous, revoked):
            response = await client.get("/v1/runs")
            assert response.status_code == 401, response.text
            assert (await client.get("/v1/me")).status_code == 401
            assert (await client.get("/v1/events", headers=SSE)).status_code == 401
        for path in ("/healthz", "/readyz", "/openapi.json", "/", "/static/app.js"):
            assert (await anonymous.get(path)).status_code == 200, path


async def test_a_database_whose_keys_are_all_revoked_starts_closed_and_says_so(
    server_factory: ServerFactory, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = await server_factory()
    token = await first.key(Role.ADMIN)
    await first.keys.revoke(key_id_of(token))
    await first.stop()
    caplog.set_level(logging.WARNING, logger="runtrack")
    caplog.clear()  # the first server served open, before its key existed
    again = await server_factory(database=database_url)
    async with again.client() as anonymous:
        assert (await anonymous.get("/v1/runs")).status_code == 401
    said = [r.getMessage() for r in caplog.records if r.name == "runtrack"]
    assert any("no active API key" in line and "CLOSED" in line for line in said), said
    assert not any("OPEN" in line for line in said), said


async def test_a_public_bind_whose_keys_are_all_revoked_serves_closed(
    server_factory: ServerFactory, database_url: str
) -> None:
    first = await server_factory()
    token = await first.key(Role.USER)
    await first.keys.revoke(key_id_of(token))
    await first.stop()
    app = create_app(Settings(database=database_url, host="0.0.0.0"))
    async with app.router.lifespan_context(app):
        assert await app.state.keys.ever_keyed()
        assert not await app.state.keys.any_active()


def run_sql(sql: str, context: WriteContext) -> None:
    context.tx.execute(sql)


async def test_the_database_refuses_to_delete_a_key(
    server_factory: ServerFactory, store_factory: StoreFactory, database_url: str
) -> None:
    """What keeps a revoked database closed is its key rows: nothing may delete them."""
    server = await server_factory()
    await server.key(Role.USER)
    statements = ["DELETE FROM api_keys"]
    if database_url.startswith("postgresql://"):
        statements.append("TRUNCATE api_keys")
    async with store_factory() as store:
        for statement in statements:
            with pytest.raises(Exception, match="API keys are never deleted"):
                await store.transact(partial(run_sql, statement))
    assert len(await server.keys.list()) == 1


# Finding 4: revocation reaches every server within a poll and ends the key's streams.


async def test_a_cli_revocation_refuses_the_key_and_ends_its_stream(
    server_factory: ServerFactory, database_url: str, server_errors: pytest.LogCaptureFixture
) -> None:
    server = await server_factory(heartbeat_seconds=15.0)
    token = await server.key(Role.USER, "org-a")
    other = await server.key(Role.USER, "org-a")
    async with server.client(token) as client, server.client(other) as bystander:
        assert (await client.get("/v1/runs")).status_code == 200  # verified, so cached
        async with open_events(client) as doomed, open_events(bystander) as kept:
            await revoke_with_cli(database_url, key_id_of(token))
            tail = await stream_ends(doomed)
            assert tail[-1] == ": the API key was revoked"
            gate = server.app.state.streams
            await eventually(lambda: gate.open == 1, within=PATIENCE)  # its slot is released
            assert server.app.state.open_streams.count(key_id_of(other)) == 1
            assert not kept.response.is_closed
        await until_status(client, "/v1/runs", 401)
        async with server.client() as anonymous:
            params = {"access_token": token}
            reconnect = await anonymous.get("/v1/events", headers=SSE, params=params)
        assert reconnect.status_code == 401
        assert (await bystander.get("/v1/runs")).status_code == 200
    assert not [r.getMessage() for r in server_errors.records if r.levelno >= logging.ERROR]


async def test_a_stream_opened_in_open_mode_ends_when_the_first_key_is_created(
    server_factory: ServerFactory, database_url: str
) -> None:
    server = await server_factory(heartbeat_seconds=15.0)
    async with server.client() as anonymous:
        async with open_events(anonymous) as source:
            await create_key(database_url, "admin")
            await stream_ends(source)
        await until_status(anonymous, "/v1/runs", 401)


async def answers_on_fresh_connections(url: str, token: str) -> set[int]:
    """The statuses of ``GET /v1/runs`` over 60 new connections, ten at a time, so that every
    process behind the port is asked (as in tests/e2e/test_processes.py)."""
    headers = {"Authorization": f"Bearer {token}"}
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    statuses: set[int] = set()
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, limits=no_reuse
    ) as client:

        async def ask() -> int:
            return (await client.get("/v1/runs")).status_code

        for _ in range(6):
            statuses.update(await asyncio.gather(*(ask() for _ in range(10))))
    return statuses


async def test_a_revocation_reaches_every_process_of_every_server(
    server_process: ProcessFactory, postgres_schema_url: str
) -> None:
    token = await create_key(postgres_schema_url, "user")
    spare = await create_key(postgres_schema_url, "user")
    several = await server_process("--processes", "2", database=postgres_schema_url)
    try:
        single = await server_process(database=postgres_schema_url)
        await revoke_on_both(several, single, token, spare)
    finally:  # SIGTERM: the supervisor stops its children (a SIGKILL would orphan them)
        await several.signal(signal.SIGTERM)


async def revoke_on_both(a: ServerProcess, b: ServerProcess, token: str, spare: str) -> None:
    for server in (a, b):  # every process verifies the key, and caches it
        assert await answers_on_fresh_connections(server.url, token) == {200}
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=a.url, headers=headers, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, headers=headers, timeout=30) as on_b,
    ):
        async with open_events(on_a) as on_a_stream, open_events(on_b) as on_b_stream:
            await revoke_with_cli(a.database, key_id_of(token))
            await stream_ends(on_a_stream)
            await stream_ends(on_b_stream)
        for client in (on_a, on_b):
            await until_status(client, "/v1/runs", 401)
    for server in (a, b):  # each process polls on its own: the last may be one poll behind
        await until_every_process_answers(server.url, token, {401})
        assert await answers_on_fresh_connections(server.url, spare) == {200}


async def until_every_process_answers(url: str, token: str, expected: set[int]) -> None:
    async def poll() -> None:
        while await answers_on_fresh_connections(url, token) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), PATIENCE)


class LoggedServer(ServerProcess):
    """``runtrack serve`` with everything it writes captured: uvicorn's access log goes to
    stdout, every other log to stderr; both go to one pipe here."""

    async def start(self) -> LoggedServer:
        self.process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "api", "serve", "--database", self.database),
            *("--port", str(self.port), *self.args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        await self._wait_ready()
        return self

    async def stop_and_read(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        self.process.send_signal(signal.SIGTERM)
        log = await asyncio.wait_for(self.process.stdout.read(), 30)
        await self.process.wait()
        return log.decode(errors="replace")


async def test_the_access_log_carries_no_key(tmp_path: Path) -> None:
    database = str(tmp_path / "logged.db")
    token = await create_key(database, "admin")
    server = await LoggedServer(database, free_port(), ["--access-log"]).start()
    try:
        await use_the_key_every_way(server.url, token)
    finally:
        log = await server.stop_and_read()
    assert "GET /v1/events?access_token=***&visibility=user" in log, log
    assert "GET /v1/runs?access_token=*** HTTP/1.1" in log, log
    assert token.split("_", 2)[2] not in log
    assert "guessed" not in log


async def test_a_metrics_socket_turns_no_access_log_on(tmp_path: Path) -> None:
    """Binding ``--metrics-listen`` makes a second uvicorn config, which must leave the
    server's logging (no access log, keys redacted) as it was."""
    database = str(tmp_path / "metrics.db")
    token = await create_key(database, "admin")
    metrics = ["--metrics-listen", f"127.0.0.1:{free_port()}"]
    server = await LoggedServer(database, free_port(), metrics).start()
    try:
        await use_the_key_every_way(server.url, token)
    finally:
        log = await server.stop_and_read()
    assert "GET /v1/" not in log, log
    assert token.split("_", 2)[2] not in log


async def use_the_key_every_way(url: str, token: str) -> None:
    """A stream with ``?access_token=``, a request with the header, a guess in the query."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        params = {"access_token": token, "visibility": "user"}
        async with client.stream("GET", "/v1/events", headers=SSE, params=params) as response:
            assert response.status_code == 200
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/v1/runs", headers=headers)).status_code == 200
        refused = await client.get("/v1/runs", params={"access_token": "rtk_0a1b_guessed"})
        assert refused.status_code == 401


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /v1/events?access_token=rtk_ab12_s3-t_x&x=1", "GET /v1/events?access_token=***&x=1"),
        ("{'authorization': 'Bearer rtk_ab12_s3cret'}", "{'authorization': 'Bearer ***'}"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
        ("key rtk_ab12_s3cret was used", "key rtk_ab12_*** was used"),
        ("GET /v1/runs?access%5Ftoken=%72tk_ab12_s3cret", "GET /v1/runs?access_token=***"),
        ("[(b'authorization', b'Bearer m3trics')]", "[(b'authorization', b'Bearer ***')]"),
        ("GET /v1/runs?limit=5 200", "GET /v1/runs?limit=5 200"),
    ],
)
def test_redaction_rewrites_every_shape_of_a_key(line: str, expected: str) -> None:
    assert redact(line) == expected


async def test_a_key_check_that_fails_half_way_is_made_again(store_factory: StoreFactory) -> None:
    """The counter moved but the revoked keys could not be read: the next check acts."""

    def rename(old: str, new: str) -> Callable[[WriteContext], None]:
        return lambda context: context.tx.execute(f"ALTER TABLE {old} RENAME TO {new}")

    async with store_factory() as store:
        keys = KeyRing(store)
        await keys.setup()
        key_id = (await keys.create("org-a", Role.USER)).split("_")[1]
        streams = OpenStreams()
        watch = KeyWatch(keys, streams, interval=3600.0)
        await watch.start()
        try:
            with streams.watching(key_id) as stream:
                await keys.revoke(key_id)
                await store.transact(rename("api_keys", "api_keys_away"))
                with pytest.raises(Exception, match="api_keys"):
                    await watch.check()
                await store.transact(rename("api_keys_away", "api_keys"))
                await watch.check()
                assert stream.cancel_called
        finally:
            await watch.aclose()
