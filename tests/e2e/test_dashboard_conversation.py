"""The conversation page in headless Chromium: runs in order, the transcript, events on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize

from .browser import chromium
from .conftest import ServerProcess, create_key, free_port
from .test_dashboard import screenshot

pytestmark = pytest.mark.anyio
DESKTOP = ViewportSize(width=1400, height=900)
PHONE = ViewportSize(width=390, height=844)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so that the module shares one server and one browser


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    database = str(tmp_path_factory.mktemp("conversation") / "e2e.db")
    process = ServerProcess(database, free_port(), ["--run-create-rate", "1000"])
    await process.start()
    yield process
    await process.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=DESKTOP)
    yield await context.new_page()
    await context.close()


async def turn(
    client: httpx.AsyncClient,
    conversation: str,
    asked: str,
    *events: dict[str, Any],
    end: bool = True,
) -> str:
    """One run of ``conversation``: created with the user's message, claimed, ``events``
    appended, and ended unless ``end`` is false."""
    body = {"agent_id": "chat-agent", "conversation_id": conversation, "message": asked}
    run = (await client.post("/v1/runs", json=body)).json()
    claimed = await client.post(
        "/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]}
    )
    assert claimed.status_code == 200
    done = [{"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}]
    await append(client, run["id"], *events, *(done if end else []))
    return str(run["id"])


async def append(client: httpx.AsyncClient, run_id: str, *events: dict[str, Any]) -> None:
    if events:
        answer = await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events)})
        assert answer.status_code == 201, answer.text


def said(role: str, content: str, visibility: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": "message_created",
        "payload": {"role": role, "content": content},
    }
    return event if visibility is None else {**event, "visibility": visibility}


def tool(call: str) -> list[dict[str, Any]]:
    return [
        {"event_type": "tool_started", "payload": {"tool_call_id": call, "name": "search"}},
        {"event_type": "tool_finished", "payload": {"tool_call_id": call, "name": "search"}},
    ]


TRANSCRIPT = """() => [...document.querySelectorAll(".msg")]
    .map((m) => `${m.dataset.role}: ${m.querySelector(".msg-text").textContent}`)"""
"""The transcript as ``role: text`` lines, top to bottom."""
SIZES = """() => [document.documentElement.scrollHeight, document.documentElement.scrollWidth,
    innerHeight, innerWidth]"""


async def test_runs_in_order_with_links_and_the_transcript_live(
    server: ServerProcess, page: Page
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        first = await turn(client, "c-chat", "hello", said("assistant", "hi there"))
        second = await turn(client, "c-chat", "search it", *tool("t1"), said("tool", '{"hits": 3}'))
        third = await turn(client, "c-chat", "and now?", end=False)
        await page.goto(f"{server.url}/#/conversations/c-chat")
        # the count is drawn once every run's messages are read
        await page.wait_for_selector('.conv-count:text-is("3 runs")')
        groups = page.locator(".conv-run")
        assert await groups.evaluate_all("(l) => l.map((g) => g.dataset.runId)") == [
            first,
            second,
            third,
        ]
        links = page.locator(".conv-run h3 a")
        assert await links.evaluate_all("(l) => l.map((a) => a.getAttribute('href'))") == [
            f"#/runs/{run}" for run in (first, second, third)
        ]
        assert await page.evaluate(TRANSCRIPT) == [
            "user: hello",
            "assistant: hi there",
            "user: search it",
            "tool: " + '{"hits": 3}',
            "user: and now?",
        ]
        current = page.locator(f'.conv-run[data-run-id="{third}"]')
        assert await current.get_attribute("aria-current") == "true"
        facts = page.locator(f'.conv-run[data-run-id="{first}"] .conv-facts')
        assert "stop reason end_turn" in " ".join((await facts.inner_text()).split())
        await page.wait_for_selector("#connection.live")

        await append(client, third, said("assistant", "now this"))
        await page.wait_for_selector(f'.conv-run[data-run-id="{third}"] .msg-assistant')
        await append(
            client,
            third,
            {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}},
        )
        await page.wait_for_selector(f'.conv-run[data-run-id="{third}"][data-status="completed"]')
        fourth = await turn(client, "c-chat", "one more", end=False)
        await page.wait_for_selector(f'.conv-run[data-run-id="{fourth}"] .msg-user')
        assert (await page.evaluate(TRANSCRIPT))[-2:] == ["assistant: now this", "user: one more"]
        await page.wait_for_selector(f'.conv-run[data-run-id="{fourth}"][aria-current="true"]')

        await screenshot(page, "conversation-chat")
        await page.set_viewport_size(PHONE)
        _, width, _, inner_width = await page.evaluate(SIZES)
        assert width <= inner_width
        await screenshot(page, "conversation-chat-narrow")
        await links.first.click()
        await page.wait_for_selector(f'h1:text-is("{first}")')


async def test_a_runs_events_are_read_only_when_its_group_is_opened(
    server: ServerProcess, page: Page
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        run_id = await turn(client, "c-lazy", "go", *tool("t1"), said("assistant", "ok"), end=False)
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/events?" in r.url else None)
        await page.goto(f"{server.url}/#/conversations/c-lazy")
        group = page.locator(f'.conv-run[data-run-id="{run_id}"]')
        await group.locator(".msg-assistant").wait_for()
        assert not [url for url in asked if f"/runs/{run_id}/events" in url]
        assert await group.locator(".conv-events-list li").count() == 0
        await group.get_by_text("Events", exact=True).click()
        logged = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
        await group.locator(f'.conv-events-list li[data-event-id="{logged[-1]["id"]}"]').wait_for()
        shown = await group.locator(".conv-events-list li").evaluate_all(
            "(l) => l.map((e) => e.dataset.type)"
        )
        assert shown == [e["event_type"] for e in logged]
        assert [url for url in asked if f"/runs/{run_id}/events" in url]

        end = {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}
        answer = await client.post(f"/v1/runs/{run_id}/events", json={"events": [end]})
        ended = answer.json()["events"][0]["id"]
        await group.locator(f'.conv-events-list li[data-event-id="{ended}"]').wait_for()  # live
        assert await group.locator(".conv-events-list li").count() == len(logged) + 1


async def test_a_long_conversation_is_a_short_page_at_both_sizes(
    server: ServerProcess, page: Page
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        runs = []
        output = said("tool", "\n".join(f"row {row}" for row in range(40)))  # folded
        for number in range(14):  # 14 runs of 44 or 45 events: 617 events
            work = [event for call in range(20) for event in tool(f"t{call}")]
            work += [output] if number == 13 else []
            answer = said("assistant", f"answer {number}")
            runs.append(await turn(client, "c-long", f"task {number}", *work, answer))
        await page.goto(f"{server.url}/#/conversations/c-long")
        await page.wait_for_selector(f'.conv-run[data-run-id="{runs[-1]}"] .msg-assistant')
        await page.wait_for_selector('.conv-count:text-is("showing the newest 10 of 14 runs")')
        for size, name in ((DESKTOP, "conversation-long"), (PHONE, "conversation-long-narrow")):
            await page.set_viewport_size(size)
            height, width, inner_height, inner_width = await page.evaluate(SIZES)
            assert height < 3 * inner_height, f"{height} px tall at {size}"
            assert width <= inner_width, f"sideways scrolling at {size}"
            await screenshot(page, name)
        await page.set_viewport_size(DESKTOP)
        text = page.locator(".msg-tool .msg-text")
        overflows = "(e) => e.scrollHeight > e.clientHeight"
        assert await text.evaluate(overflows)
        unfold = page.get_by_role("button", name="Show the whole message")
        await unfold.click()
        assert await page.locator(".msg-tool button").get_attribute("aria-expanded") == "true"
        assert not await text.evaluate(overflows)
        await page.get_by_role("button", name="Show earlier runs").click()
        await page.wait_for_selector(f'.conv-run[data-run-id="{runs[0]}"]')
        shown = await page.locator(".conv-run").evaluate_all("(l) => l.map((g) => g.dataset.runId)")
        assert shown == runs
        await page.get_by_role("button", name="Show earlier runs").wait_for(state="hidden")


async def test_a_user_key_sees_only_what_it_may(tmp_path: Path, browser: Browser) -> None:
    database = str(tmp_path / "keys.db")
    operator, user = await create_key(database, "operator"), await create_key(database, "user")
    process = await ServerProcess(database, free_port()).start()
    try:
        headers = {"Authorization": f"Bearer {operator}"}
        async with httpx.AsyncClient(base_url=process.url, headers=headers) as client:
            run_id = await turn(
                client,
                "c-keys",
                "what is up",
                *tool("t1"),
                said("assistant", "operator note", "operator"),
                said("assistant", "all good"),
            )
        context = await browser.new_context(viewport=PHONE)
        await context.add_init_script(f"sessionStorage.setItem('runtrack-key', {user!r})")
        page = await context.new_page()
        await page.goto(f"{process.url}/#/conversations/c-keys")
        group = page.locator(f'.conv-run[data-run-id="{run_id}"]')
        await group.locator(".msg-assistant").wait_for()
        assert await page.evaluate(TRANSCRIPT) == ["user: what is up", "assistant: all good"]
        seen = {"Authorization": f"Bearer {user}"}
        async with httpx.AsyncClient(base_url=process.url, headers=seen) as client:
            visible = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
        await group.get_by_text("Events", exact=True).click()
        await group.locator(f'.conv-events-list li[data-event-id="{visible[-1]["id"]}"]').wait_for()
        types = await group.locator(".conv-events-list li").evaluate_all(
            "(l) => l.map((e) => e.dataset.type)"
        )
        assert "tool_started" not in types
        assert types.count("message_created") == 2
        assert "operator note" not in await page.inner_text("main")
        facts = " ".join((await group.locator(".conv-facts").inner_text()).split())
        assert "status completed" in facts  # the summary, which every role sees
        assert "stop reason end_turn" in facts
        await screenshot(page, "conversation-user-key-narrow")
        await context.close()
    finally:
        await process.stop()
