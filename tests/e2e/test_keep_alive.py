"""A connection the server closes for idleness is never the one a client's request goes on.

uvicorn closes a kept-alive connection ``--keep-alive-timeout`` seconds after its last answer;
a request the client sends on it at that moment is reset unread (``httpx.ReadError``). Under
load the window widens: a server whose loop is late runs the due close before it reads the
request waiting on the connection. A stopped server (SIGSTOP) is that late loop, made
deterministic: the request waits in the kernel until the server is continued past its
keep-alive. ``RuntrackClient`` drops a pooled connection idle for 2 s, below the server's
keep-alive, so it sends on a fresh connection instead (httpx's own default, 5 s, would reuse
the closing one here: the test fails with ``keepalive_expiry=5``).
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from api.client import RuntrackClient
from api.client.async_client import KEEPALIVE_EXPIRY
from tests.waiting import eventually, request_unread

from .conftest import ProcessFactory

pytestmark = pytest.mark.anyio
KEEP_ALIVE = 3.0
"""The server's keep-alive here: above the client's idle expiry (2 s), as by default (20 s)."""


async def test_a_request_after_an_idle_pause_never_meets_the_closing_connection(
    server_process: ProcessFactory,
) -> None:
    server = await server_process("--keep-alive-timeout", str(KEEP_ALIVE))
    assert server.process is not None
    loop = asyncio.get_running_loop()
    async with RuntrackClient(server.url) as client:
        run = await client.create_run("agent")  # the connection is pooled, idle from here
        answered = loop.time()
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            # The subject: a pause longer than the client's expiry, shorter than the
            # server's keep-alive, then a request the stopped server holds unread.
            await asyncio.sleep((KEEPALIVE_EXPIRY + KEEP_ALIVE) / 2)
            request = asyncio.ensure_future(client.get_run(run.id))
            await eventually(lambda: request_unread(server.port))
            # The subject again: the server's keep-alive falls due while it is stopped, so
            # that it closes the idle connection first thing once it runs.
            await asyncio.sleep(max(0.0, answered + KEEP_ALIVE + 0.2 - loop.time()))
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert (await request).id == run.id
