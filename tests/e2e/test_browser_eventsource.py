"""A native EventSource in headless Chromium: reconnects by itself, stops on 204 and 400."""

from __future__ import annotations

import signal

import httpx
import pytest
from playwright.async_api import Browser

from .browser import fresh_contexts
from .conftest import ProcessFactory

pytestmark = pytest.mark.anyio

LISTEN = """
window.seen = [];
window.stream = new EventSource('/v1/events');
for (const type of ['run_created', 'custom.n']) {
  window.stream.addEventListener(type, (e) => window.seen.push(Number(e.lastEventId)));
}
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so that the module shares one Chromium


async def append_notes(url: str, run: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for n in range(count):
            body = {"events": [{"event_type": "custom.n", "payload": {"n": n}}]}
            assert (await client.post(f"/v1/runs/{run}/events", json=body)).status_code == 201


async def test_the_browser_reconnects_with_last_event_id_and_sees_each_event_once(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    first = await server_process("--retry-ms", "200")
    async with httpx.AsyncClient(base_url=first.url) as client:
        run = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
    async with fresh_contexts(chromium_browser) as browser:
        page = await browser.new_page()
        await page.goto(first.url + "/")
        await page.evaluate(LISTEN)
        await append_notes(first.url, run, 5)
        await page.wait_for_function("window.seen.length >= 6", timeout=15_000)

        await first.signal(signal.SIGTERM)  # the server drops every stream
        await page.wait_for_function("window.stream.readyState === 0", timeout=15_000)
        second = await server_process("--retry-ms", "200", database=first.database, port=first.port)
        await append_notes(second.url, run, 5)
        await page.wait_for_function("window.seen.length >= 11", timeout=15_000)
        seen = await page.evaluate("window.seen")
        state = await page.evaluate("window.stream.readyState")
    assert seen == list(range(1, 12))
    assert state == 1  # open again


STOPS = """
async (url) => {
  const stream = new EventSource(url);
  window.ended = false;
  stream.addEventListener('end', () => { window.ended = true; });
  return await new Promise((resolve) => {
    const check = setInterval(() => {
      if (stream.readyState === 2) { clearInterval(check); resolve(window.ended); }
    }, 20);
  });
}
"""


async def test_the_browser_stops_on_204_after_a_run_ends_and_on_400(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process("--retry-ms", "100")
    async with httpx.AsyncClient(base_url=server.url) as client:
        run = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        await client.post("/v1/runs/claim", json={"worker_id": "w"})
        end = {
            "events": [{"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}]
        }
        await client.post(f"/v1/runs/{run}/events", json=end)
    async with fresh_contexts(chromium_browser) as browser:
        page = await browser.new_page()
        await page.goto(server.url + "/")
        ended = await page.evaluate(STOPS, f"/v1/runs/{run}/events")
        refused = await page.evaluate(STOPS, "/v1/events?after_event_id=999")
    assert ended is True  # got 'end', reconnected once, got 204, and stopped for good
    assert refused is False  # a 400 fails the stream at once: no retry loop
