"""Every dashboard page at 1400x900 and 390x844: no serious or critical axe-core violation,
no sideways scrolling, and a screenshot of each in ``test-artifacts/NAME-WIDTH.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ViewportSize

from .browser import chromium
from .conftest import ProcessFactory, create_key
from .pages import ARTIFACTS, NARROW, WIDE, check_page

pytestmark = pytest.mark.anyio
CONVERSATION = "c-a11y"


async def append(client: httpx.AsyncClient, run_id: str, *events: dict[str, Any]) -> None:
    answer = await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events)})
    assert answer.status_code == 201, answer.text


async def a_run_with_everything(client: httpx.AsyncClient) -> str:
    """A run that called a tool, started a child run and now waits on a person."""
    body = {"agent_id": "a11y-agent", "conversation_id": CONVERSATION, "message": "hello"}
    run_id = str((await client.post("/v1/runs", json=body)).json()["id"])
    await client.post(
        "/v1/runs/claim", json={"worker_id": "w", "lane_key": f"conversation:{CONVERSATION}"}
    )
    child = {"agent_id": "a11y-child", "parent_run_id": run_id}
    child_id = (await client.post("/v1/runs", json=child)).json()["id"]
    ask = {"question_id": "q-1", "question": "Ship it?", "choices": ["yes", "no"]}
    await append(
        client,
        run_id,
        {"event_type": "tool_started", "payload": {"tool_call_id": "t1", "name": "search"}},
        {"event_type": "tool_finished", "payload": {"tool_call_id": "t1", "name": "search"}},
        {"event_type": "child_run_started", "payload": {"child_run_id": child_id}},
        {"event_type": "child_run_finished", "payload": {"child_run_id": child_id}},
        {"event_type": "metadata_updated", "payload": {"patch": {"progress": 1, "total": 3}}},
        {"event_type": "human_input_requested", "payload": ask},
        {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}},
    )
    return run_id


async def every_page(
    browser: Browser, url: str, token: str, run_id: str, size: ViewportSize
) -> list[str]:
    page = await browser.new_page(viewport=size)
    await page.goto(url + "/")
    dialog = page.get_by_role("dialog", name="API key")
    await dialog.wait_for()
    problems = await check_page(page, "login")
    await dialog.get_by_label("This server needs an API key.").fill(token)
    await dialog.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector(f'tr[data-run-id="{run_id}"]')
    await page.wait_for_selector("#connection.live")
    problems += await check_page(page, "board")
    await page.goto(f"{url}/#/runs/{run_id}")
    await page.wait_for_selector('.panel[data-status="waiting_on_human"] .question')
    await page.get_by_text("All events").click()  # the event list starts collapsed
    await page.wait_for_selector('.timeline li[data-type="child_run_finished"]')
    problems += await check_page(page, "run")
    await page.goto(f"{url}/#/conversations/{CONVERSATION}")
    await page.wait_for_selector('.panel[data-status="waiting_on_human"]')
    problems += await check_page(page, "conversation")
    await page.close()
    return problems


async def test_every_page_passes_axe_and_fits_both_sizes(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    database = str(tmp_path / "a11y.db")
    token = await create_key(database, "operator")
    server = await server_process(database=database)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        chromium() as browser,
        httpx.AsyncClient(base_url=server.url, headers=headers) as client,
    ):
        run_id = await a_run_with_everything(client)
        problems = []
        for size in (WIDE, NARROW):
            problems += await every_page(browser, server.url, token, run_id, size)
    assert problems == [], "\n".join(problems)
    for name in ("login", "board", "run", "conversation"):
        for width in (WIDE["width"], NARROW["width"]):
            assert (ARTIFACTS / f"{name}-{width}.png").stat().st_size > 0
