"""The board in headless Chromium: search by run id and metadata, filters in the address
through reload and back/forward, the last minute's chart at load, and its columns' fit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from .browser import fresh_contexts
from .conftest import ProcessFactory
from .pages import NARROW, WIDE

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so that the module shares one Chromium


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    answer = await client.post("/v1/runs", json={"agent_id": "board-agent", **body})
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()
    return run


def rows(page: Page) -> Any:
    return page.locator("tr[data-run-id]")


async def shown(page: Page) -> list[str]:
    return [await row.get_attribute("data-run-id") or "" for row in await rows(page).all()]


SHOWN_ARE = """(expected) => JSON.stringify([...document.querySelectorAll("tr[data-run-id]")]
  .map((row) => row.dataset.runId)) === JSON.stringify(expected)"""


async def test_search_by_run_id_and_by_metadata(
    chromium_browser: Browser, server_process: ProcessFactory
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        wanted = await create(client, metadata={"team": "search", "priority": 3})
        other = await create(client, metadata={"team": "ops, on call"})
        page = await browser.new_page()
        await page.goto(server.url + "/")
        await page.wait_for_selector(f'tr[data-run-id="{other["id"]}"]')
        run_field = page.get_by_role("textbox", name="run id")

        prefix = wanted["id"][:-3]  # a run id cut short: the runs it starts
        await run_field.fill(prefix)
        await run_field.press("Enter")
        await page.wait_for_function(f"location.hash === '#/?run={prefix}'")
        await page.locator(f'tr[data-run-id="{other["id"]}"]').wait_for(state="detached")
        assert await shown(page) == [wanted["id"]]
        await page.locator(".counts").get_by_text("1 run", exact=True).wait_for()

        await run_field.fill(other["id"])  # a whole run id: that run's page
        await run_field.press("Enter")
        await page.wait_for_function(f"location.hash === '#/runs/{other['id']}'")
        await page.go_back()
        await page.wait_for_function(f"location.hash === '#/?run={prefix}'")
        assert await page.get_by_role("textbox", name="run id").input_value() == prefix
        await page.wait_for_selector(f'tr[data-run-id="{wanted["id"]}"]')

        await page.get_by_role("textbox", name="run id").fill("")
        metadata = page.get_by_role("textbox", name="metadata")
        for given, expected in (
            ("priority=3", [wanted["id"]]),
            ("team=ops, on call", [other["id"]]),  # a comma not followed by key= is the value's
            ("team=search, priority=3", [wanted["id"]]),
            ("team=nobody", []),
        ):
            await metadata.fill(given)
            await metadata.press("Enter")
            await page.wait_for_function(SHOWN_ARE, arg=expected)  # fails on a timeout
        assert "metadata=team%3Dnobody" in await page.evaluate("location.hash")
        await metadata.fill("team")
        await metadata.press("Enter")
        problem = page.get_by_role("alert").filter(has_text="key=value")
        await problem.wait_for()
        assert "team" in await problem.inner_text()


async def test_the_agent_filter_round_trips_typing_reload_and_history(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        mine = await create(client, agent_id="agent-mine")
        theirs = await create(client, agent_id="agent-theirs")
        page = await browser.new_page()
        await page.goto(server.url + "/")
        await page.wait_for_selector(f'tr[data-run-id="{theirs["id"]}"]')
        agent = page.get_by_role("textbox", name="agent")
        await agent.fill("agent-mine")
        await agent.press("Enter")
        await page.wait_for_function("location.hash === '#/?agent=agent-mine'")
        await page.locator(f'tr[data-run-id="{theirs["id"]}"]').wait_for(state="detached")

        await page.reload()
        await page.wait_for_selector(f'tr[data-run-id="{mine["id"]}"]')
        assert await page.get_by_role("textbox", name="agent").input_value() == "agent-mine"
        assert await shown(page) == [mine["id"]]

        await page.get_by_role("combobox", name="status").select_option("completed")
        await page.wait_for_function("location.hash === '#/?status=completed&agent=agent-mine'")
        await page.locator(f'tr[data-run-id="{mine["id"]}"]').wait_for(state="detached")
        await page.go_back()
        await page.wait_for_function("location.hash === '#/?agent=agent-mine'")
        await page.wait_for_selector(f'tr[data-run-id="{mine["id"]}"]')
        assert await page.get_by_role("combobox", name="status").input_value() == ""
        await page.go_back()
        await page.wait_for_selector(f'tr[data-run-id="{theirs["id"]}"]')
        assert await page.get_by_role("textbox", name="agent").input_value() == ""
        await page.go_forward()
        await page.wait_for_function("location.hash === '#/?agent=agent-mine'")
        await page.locator(f'tr[data-run-id="{theirs["id"]}"]').wait_for(state="detached")
        assert await page.get_by_role("textbox", name="agent").input_value() == "agent-mine"


COLUMNS = """() => {
  const chart = [...document.querySelectorAll("figure")]
    .find((f) => f.getAttribute("aria-label").startsWith("Runs by status"));
  return chart ? Number(chart.dataset.samples) : -1;
}"""


async def test_the_last_minute_is_on_the_chart_at_load(
    chromium_browser: Browser, server_process: ProcessFactory
) -> None:
    """Without the server's history the chart starts with one sample and gains one a second."""
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        run = await create(client)
        await client.post("/v1/runs/claim", json={"worker_id": "w"})
        page = await browser.new_page()
        async with page.expect_response("**/v1/runs/stats/history?*") as answered:
            await page.goto(server.url + "/")
        history = await (await answered.value).json()
        assert len(history["samples"]) == 60
        assert history["samples"][-1]["by_status"] == {"running": 1}
        await page.wait_for_selector(f'tr[data-run-id="{run["id"]}"]')
        assert await page.evaluate(COLUMNS) == 60
        await page.locator("figure svg rect.f-running").first.wait_for()


async def test_every_column_fits_at_1400_and_every_field_shows_at_390(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        long = "x" * 120
        default_lane = await create(client, agent_id=f"agent-{long}", conversation_id=f"c-{long}")
        own_lane = await create(client, lane_key="lane-shared")
        page = await browser.new_page(viewport=WIDE)
        await page.goto(server.url + "/")
        await page.wait_for_selector(f'tr[data-run-id="{default_lane["id"]}"]')
        headers = await page.locator("table.runs th").all_inner_texts()
        assert headers == [
            "run",
            "status",
            "agent",
            "created",
            "elapsed",
            "conversation",
            "stop reason",
            "tokens",
        ]
        table: dict[str, float] = await page.evaluate(
            """() => { const t = document.querySelector("table.runs");
                       return { right: t.getBoundingClientRect().right,
                                scroll: t.parentElement.scrollWidth,
                                client: t.parentElement.clientWidth }; }"""
        )
        assert table["scroll"] <= table["client"], table  # nothing pushed off to the side
        assert table["right"] <= WIDE["width"]
        lanes = await page.locator("tr[data-run-id] .lane").all_inner_texts()
        assert lanes == ["lane lane-shared"]  # the default lane is the conversation: not repeated
        created = page.locator(f'tr[data-run-id="{own_lane["id"]}"] td.created time')
        assert await created.get_attribute("datetime") == own_lane["created_at"]

        await page.set_viewport_size(NARROW)
        tokens = page.locator(f'tr[data-run-id="{default_lane["id"]}"] td.tokens')
        box = await tokens.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= NARROW["width"]
        assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
