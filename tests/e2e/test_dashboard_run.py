"""The run page in headless Chromium: summary, waterfall, replayed calls, related runs, live
growth, what a ``user`` key sees, and both screen sizes. One keyed server for the module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize

from api.client import RunContext, RuntrackClient, Worker

from .browser import chromium
from .conftest import ServerProcess, create_key, free_port

pytestmark = pytest.mark.anyio
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
WIDE: ViewportSize = {"width": 1400, "height": 900}
NARROW: ViewportSize = {"width": 390, "height": 844}
END = {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}
lanes = count()
page_errors: list[str] = []


@dataclass
class Site:
    server: ServerProcess
    browser: Browser
    admin: str
    user: str


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    database = str(tmp_path_factory.mktemp("run-page") / "run-page.db")
    admin, user = await create_key(database, "admin"), await create_key(database, "user")
    server = await ServerProcess(database, free_port()).start()
    try:
        async with chromium() as browser:
            yield Site(server, browser, admin, user)
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def no_page_errors() -> Iterator[None]:
    """Every test fails on an uncaught error in the page's scripts."""
    page_errors.clear()
    yield
    assert page_errors == []


@pytest.fixture
async def client(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {site.admin}"}
    async with httpx.AsyncClient(base_url=site.server.url, headers=headers) as client:
        yield client


async def open_page(site: Site, path: str, token: str | None = None) -> Page:
    """A fresh tab signed in with ``token`` (the admin key unless told) at ``path``."""
    context = await site.browser.new_context(viewport=WIDE)
    await context.add_init_script(
        f"sessionStorage.setItem('runtrack-key', {token or site.admin!r})"
    )
    page = await context.new_page()
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    await page.goto(site.server.url + path)
    return page


async def running_run(client: httpx.AsyncClient, **body: Any) -> str:
    """A new run on a lane of its own, claimed: the module's runs never wait for each other."""
    lane = f"lane-{next(lanes)}"
    created = await client.post(
        "/v1/runs", json={"agent_id": "page-agent", "lane_key": lane, **body}
    )
    assert created.status_code == 201, created.text
    await claim(client, lane)
    return str(created.json()["id"])


async def claim(client: httpx.AsyncClient, lane: str) -> None:
    claimed = await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": lane})
    assert claimed.status_code == 200, claimed.text


async def append(client: httpx.AsyncClient, run_id: str, *events: dict[str, Any]) -> list[int]:
    answer = await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events)})
    assert answer.status_code == 201, answer.text
    return [int(event["id"]) for event in answer.json()["events"]]


def started(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {
        "event_type": "tool_started",
        "payload": {"tool_call_id": call_id, "name": name, "arguments": arguments},
    }


def finished(call_id: str, name: str, ms: float | None, **outcome: Any) -> dict[str, Any]:
    payload = {"tool_call_id": call_id, "name": name, "duration_ms": ms, **outcome}
    return {"event_type": "tool_finished", "payload": payload}


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def bar_width(page: Page, call_id: str) -> float:
    box = await page.locator(f'.wf-row[data-call-id="{call_id}"] .wf-bar').bounding_box()
    assert box is not None
    return float(box["width"])


async def test_tool_bars_match_their_durations_and_show_arguments_and_results(
    site: Site, client: httpx.AsyncClient
) -> None:
    run_id = await running_run(client, conversation_id="c-waterfall")
    ids = await append(
        client,
        run_id,
        started("search-1", "search", {"q": "alpha"}),
        finished("search-1", "search", 400, result={"hits": 3}),
        started("fetch-1", "fetch", {"url": "https://example.test/beta"}),
        finished("fetch-1", "fetch", 1200, result="page body"),
        started("parse-1", "parse", None),
        finished("parse-1", "parse", 2400, status="error", error="ParseError: bad gamma"),
        {"event_type": "step_completed", "payload": {"model": "m", "prompt_tokens": 7}},
        {"event_type": "checkpoint_created", "payload": {"checkpoint_id": "k", "kind": "input"}},
        {"event_type": "metadata_updated", "payload": {"patch": {"progress": 1, "total": 4}}},
        END,
    )
    page = await open_page(site, f"/#/runs/{run_id}")
    await page.locator('.wf-row[data-call-id="parse-1"]').wait_for()
    await page.get_by_label("visibility").select_option("internal")  # checkpoints too
    await page.locator('.wf-row[data-row="checkpoint"]').wait_for()
    one = await bar_width(page, "search-1")
    assert await bar_width(page, "fetch-1") / one == pytest.approx(3, rel=0.03)
    assert await bar_width(page, "parse-1") / one == pytest.approx(6, rel=0.03)

    summary = page.locator(".run-summary")
    assert await summary.locator('[data-field="agent"]').inner_text() == "page-agent"
    assert await summary.locator('[data-field="status"]').inner_text() == "completed"
    assert await summary.locator('[data-field="stop_reason"]').inner_text() == "end_turn"
    assert await summary.locator('[data-field="tools"]').inner_text() == (
        "3 calls: search, fetch, parse"
    )
    assert await summary.locator('[data-field="tokens"]').inner_text() == (
        "7 (7 prompt, 0 completion)"
    )
    assert await summary.locator('[data-field="progress"]').inner_text() == "1 / 4 (25%)"
    conversation = summary.locator('[data-field="conversation"] a')
    assert await conversation.get_attribute("href") == "#/conversations/c-waterfall"

    await page.locator('.wf-row[data-call-id="fetch-1"] .wf-bar').click()
    detail = page.locator(".wf-detail")
    await detail.get_by_role("heading", name="Tool call fetch (fetch-1)").wait_for()
    assert "https://example.test/beta" in await detail.locator("pre.wf-arguments").inner_text()
    assert await detail.locator("pre.wf-result").inner_text() == '"page body"'
    # the run as of the call's last event: time travel kept
    await page.wait_for_selector(f'pre:has-text("\\"last_event_id\\": {ids[3]}")')

    await page.locator('.wf-row[data-call-id="parse-1"]').focus()
    await page.keyboard.press("Enter")
    await detail.get_by_role("heading", name="Tool call parse (parse-1)").wait_for()
    assert await detail.get_by_role("heading", name="Error").count() == 1
    assert await detail.locator("pre.wf-result").inner_text() == "ParseError: bad gamma"
    await page.locator('.wf-row[data-row="checkpoint"]').focus()
    await page.keyboard.press(" ")
    await detail.get_by_role("heading", name="Checkpoints").wait_for()
    await screenshot(page, "run-waterfall")

    await page.get_by_text("All events").click()
    await page.locator(f'.timeline li[data-event-id="{ids[0]}"]').wait_for()
    await page.set_viewport_size(NARROW)
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    # still proportional once the waterfall has scaled to the narrow width
    one = await bar_width(page, "search-1")
    assert await bar_width(page, "parse-1") / one == pytest.approx(6, rel=0.05)
    await screenshot(page, "run-waterfall-narrow")


async def test_a_resumed_run_shows_its_finished_calls_as_replayed(
    site: Site, client: httpx.AsyncClient
) -> None:
    lane = f"lane-{next(lanes)}"
    run = (await client.post("/v1/runs", json={"agent_id": "page-agent", "lane_key": lane})).json()
    await claim(client, lane)
    await append(
        client,
        run["id"],
        {"event_type": "checkpoint_created", "payload": {"checkpoint_id": "k1", "kind": "input"}},
        started("fetch-1", "fetch", {"page": 1}),
        finished("fetch-1", "fetch", 500, result="page one"),
        started("charge-1", "charge", {"order": "o-42"}),  # the worker died inside it
        {"event_type": "run_status_changed", "payload": {"stop_reason": "error"}},
    )
    assert (await client.post(f"/v1/runs/{run['id']}/resume")).status_code == 200
    await claim(client, lane)  # attempt 2: the SDK hands back fetch-1 and records nothing
    await append(
        client,
        run["id"],
        started("charge-1", "charge", {"order": "o-42"}),  # retry=True: the same call again
        finished("charge-1", "charge", 200, result="receipt"),
        END,
    )
    page = await open_page(site, f"/#/runs/{run['id']}")
    fetch = page.locator('.wf-row[data-call-id="fetch-1"]')
    await fetch.locator(".wf-tag", has_text="replayed").wait_for()
    assert "replayed in attempt 2" in str(await fetch.get_attribute("aria-label"))
    charges = page.locator('.wf-row[data-call-id="charge-1"]')
    assert await charges.count() == 2
    assert await charges.nth(0).locator(".wf-tag").all_inner_texts() == ["unfinished"]
    assert await charges.nth(1).locator(".wf-tag").count() == 0  # run again, not replayed
    assert "Attempts" in await page.locator(".wf-note").inner_text()
    await fetch.click()
    await page.get_by_text("its result was handed back in attempt 2").wait_for()
    await screenshot(page, "run-resumed")


async def test_a_call_the_sdk_hands_back_on_a_resume_is_the_one_marked_replayed(
    site: Site,
) -> None:
    """The real SDK: a resumed handler's ``ctx.tool`` returns the recorded result and records
    nothing, so the page's rule (finished before a later attempt) finds exactly that call."""
    invoked: list[int] = []

    async def fetch(page: int) -> str:
        invoked.append(page)
        return f"page {page}"

    worker = Worker(site.server.url, site.admin, wait_seconds=0.5)

    @worker.handler("sdk-agent")
    async def handle(ctx: RunContext) -> None:
        await ctx.checkpoint("input", {"page": 1})
        body = await ctx.tool("fetch", {"page": 1}, fetch)
        if not ctx.resumed:
            raise RuntimeError("the model API went away")
        await ctx.message("assistant", body)

    serving = asyncio.create_task(worker.run(handle_signals=False))
    async with RuntrackClient(site.server.url, site.admin) as sdk:
        run = await sdk.create_run("sdk-agent")
        assert (await sdk.wait(run.id)).status == "failed"
        await sdk.resume(run.id)
        assert (await sdk.wait(run.id)).status == "completed"
    worker.stop()
    await serving
    assert invoked == [1]  # the second attempt got the result from the log
    page = await open_page(site, f"/#/runs/{run.id}")
    fetch_row = page.locator('.wf-row[data-call-id="fetch-1"]')
    await fetch_row.locator(".wf-tag", has_text="replayed").wait_for()
    assert await fetch_row.count() == 1
    assert "replayed in attempt 2" in str(await fetch_row.get_attribute("aria-label"))


async def test_child_runs_are_a_tree_linked_both_ways(
    site: Site, client: httpx.AsyncClient
) -> None:
    parent = await running_run(client)
    child = await running_run(client, parent_run_id=parent)
    grandchild = await running_run(client, parent_run_id=child)
    started_child = {"event_type": "child_run_started", "payload": {"child_run_id": child}}
    await append(client, parent, started_child)
    grand = {"event_type": "child_run_started", "payload": {"child_run_id": grandchild}}
    await append(client, child, grand)
    page = await open_page(site, f"/#/runs/{parent}")
    tree = page.locator(".run-tree")
    nested = tree.locator(f'li[data-run-id="{child}"] li[data-run-id="{grandchild}"] a')
    await nested.wait_for()
    assert await nested.get_attribute("href") == f"#/runs/{grandchild}"
    assert await tree.locator(".parent").inner_text() == "Parent run: none"
    await tree.locator(f'li[data-run-id="{child}"] > a').click()
    await page.locator("h1", has_text=child).wait_for()
    back = page.locator('.run-summary [data-field="parent"] a')
    assert await back.get_attribute("href") == f"#/runs/{parent}"
    assert await tree.locator(".parent a").get_attribute("href") == f"#/runs/{parent}"
    await tree.locator(f'li[data-run-id="{grandchild}"] a').wait_for()
    await back.click()
    await page.locator("h1", has_text=parent).wait_for()


async def test_the_waterfall_grows_as_events_arrive(site: Site, client: httpx.AsyncClient) -> None:
    run_id = await running_run(client)
    page = await open_page(site, f"/#/runs/{run_id}")
    await page.locator('.wf-row[data-key="status"]').wait_for()
    await page.wait_for_selector("#connection.live")
    assert await page.locator('.wf-row[data-row="tool"]').count() == 0
    await append(client, run_id, started("live-1", "lookup", {"id": 7}))
    bar = page.locator('.wf-row[data-call-id="live-1"] .wf-bar')
    await page.locator('.wf-row[data-call-id="live-1"] .wf-bar.wf-running').wait_for()
    await page.locator('.wf-row[data-call-id="live-1"]').click()
    await page.locator(".wf-detail pre.wf-arguments", has_text='"id": 7').wait_for()
    await append(client, run_id, finished("live-1", "lookup", 50, result={"name": "seven"}))
    await page.locator('.wf-row[data-call-id="live-1"] .wf-bar.wf-success').wait_for()
    # the selected row's detail follows: the result arrived while it was open
    await page.locator(".wf-detail pre.wf-result", has_text='"name": "seven"').wait_for()
    assert await bar.count() == 1
    # the redraw put the focus back on the row that had it
    assert await page.evaluate("document.activeElement.dataset.callId") == "live-1"
    ask = {"question_id": "q-1", "question": "Go on?", "choices": ["yes"]}
    await append(
        client,
        run_id,
        {"event_type": "human_input_requested", "payload": ask},
        {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}},
    )
    await page.locator('.wf-row[data-row="human"] .wf-bar.wf-open').wait_for()
    answer = {"response": "yes", "question_id": "q-1"}
    assert (await client.post(f"/v1/runs/{run_id}/input", json=answer)).status_code == 200
    await page.locator('.wf-row[data-row="human"] .wf-bar.wf-answered').wait_for()
    status = page.locator('.wf-row[data-key="status"]')
    await page.wait_for_function(
        "() => document.querySelector('.wf-row[data-key=\"status\"]').ariaLabel.includes('queued')"
    )
    assert await status.locator(".wf-bar").count() == 4  # queued, running, waiting_on_human, queued
    assert await page.locator(".events summary").inner_text() == "All events (8)"


async def test_a_user_key_sees_the_summary_and_no_operator_content(
    site: Site, client: httpx.AsyncClient
) -> None:
    run_id = await running_run(client, conversation_id="c-user")
    await append(
        client,
        run_id,
        started("secret-1", "secret_tool", {"token": "hunter2"}),
        finished("secret-1", "secret_tool", 10, result="classified"),
        {"event_type": "journal_updated", "payload": {"objective": "private objective"}},
        {"event_type": "checkpoint_created", "payload": {"checkpoint_id": "k", "kind": "input"}},
        {"event_type": "child_run_started", "payload": {"child_run_id": "run-hidden"}},
        {"event_type": "step_completed", "payload": {"prompt_tokens": 5, "completion_tokens": 2}},
        {"event_type": "message_created", "payload": {"role": "assistant", "content": "hello"}},
        END,
    )
    page = await open_page(site, f"/#/runs/{run_id}", token=site.user)
    await page.locator('.wf-row[data-row="message"]').wait_for()
    summary = page.locator(".run-summary")
    assert await summary.locator('[data-field="agent"]').inner_text() == "page-agent"
    assert await summary.locator('[data-field="status"]').inner_text() == "completed"
    assert await summary.locator('[data-field="tokens"]').inner_text() == (
        "7 (5 prompt, 2 completion)"
    )
    assert await summary.locator('[data-field="tools"]').count() == 0
    options = await page.get_by_label("visibility").locator("option").all_inner_texts()
    assert options == ["user"]
    await page.get_by_text("All events").click()
    await page.locator(".timeline li").last.wait_for()
    text = await page.locator("main").inner_text()
    for hidden in ("secret_tool", "hunter2", "classified", "private objective", "run-hidden"):
        assert hidden not in text
    for operator_row in ("tool", "step", "checkpoint", "child"):
        assert await page.locator(f'.wf-row[data-row="{operator_row}"]').count() == 0
    related = (await page.locator(".run-tree").inner_text()).split()
    assert " ".join(related) == "Related runs Parent run: none No child runs."
    await screenshot(page, "run-user-key")
