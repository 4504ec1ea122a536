"""The dashboard in headless Chromium: live board, status panel actions, restarts, screenshots."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page

from .browser import chromium
from .conftest import ProcessFactory, ServerProcess

pytestmark = pytest.mark.anyio
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
END = {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def running_run(client: httpx.AsyncClient, **body: Any) -> str:
    run = (await client.post("/v1/runs", json={"agent_id": "dash-agent", **body})).json()
    await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    return str(run["id"])


async def append(client: httpx.AsyncClient, run_id: str, *events: dict[str, Any]) -> None:
    assert (
        await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events)})
    ).status_code == 201


async def test_the_board_shows_new_runs_and_their_status_live(
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    async with chromium() as browser, httpx.AsyncClient(base_url=server.url) as client:
        page = await browser.new_page()
        await page.goto(server.url + "/")
        await page.wait_for_selector("#connection.live")
        run_id = await running_run(client, metadata={"team": "blue"})
        await page.wait_for_selector(
            f'tr[data-run-id="{run_id}"][data-status="running"]', timeout=5000
        )
        await append(client, run_id, END)
        await page.wait_for_selector(
            f'tr[data-run-id="{run_id}"][data-status="completed"]', timeout=5000
        )
        await screenshot(page, "board")
        await page.set_viewport_size({"width": 400, "height": 800})
        await screenshot(page, "board-narrow")


async def test_cancel_and_resume_from_the_status_panel(server_process: ProcessFactory) -> None:
    server = await server_process()
    async with chromium() as browser, httpx.AsyncClient(base_url=server.url) as client:
        page = await browser.new_page()
        first = await running_run(client, conversation_id="c-cancel")
        await page.goto(f"{server.url}/#/runs/{first}")
        await page.get_by_role("button", name="Cancel").click()
        await page.wait_for_selector("text=(cancel requested)")
        await append(
            client,
            first,
            {"event_type": "run_status_changed", "payload": {"stop_reason": "cancelled"}},
        )
        await page.wait_for_selector('.panel[data-status="cancelled"]')
        assert await page.get_by_role("button", name="Resume from last checkpoint").count() == 0
        await screenshot(page, "run-cancelled")

        second = await running_run(client, conversation_id="c-resume")
        journal = {"objective": "o", "handoff_next_action": "retry the upload"}
        await append(
            client,
            second,
            {
                "event_type": "checkpoint_created",
                "payload": {"checkpoint_id": "c", "kind": "input"},
            },
            {"event_type": "journal_updated", "payload": journal},
            {
                "event_type": "run_status_changed",
                "payload": {"stop_reason": "error", "detail": "disk full"},
            },
        )
        await page.goto(f"{server.url}/#/runs/{second}")
        await page.wait_for_selector("text=Next: retry the upload")
        await page.wait_for_selector("text=Error: disk full")
        await screenshot(page, "run-failed")
        await page.get_by_role("button", name="Resume from last checkpoint").click()
        await page.wait_for_selector('.panel[data-status="resuming"]')
        await page.locator(".timeline li").first.click()  # the run as it was when created
        await page.wait_for_selector('pre:has-text("\\"status\\": \\"queued\\"")')
        await page.goto(f"{server.url}/#/conversations/c-resume")
        await page.wait_for_selector('.panel[data-status="resuming"]')
        await screenshot(page, "conversation")


async def test_the_board_survives_a_server_restart_without_duplicate_rows(
    server_process: ProcessFactory,
) -> None:
    first = await server_process("--retry-ms", "200")
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(first.url + "/")
        async with httpx.AsyncClient(base_url=first.url) as client:
            before = await running_run(client)
        await page.wait_for_selector(f'tr[data-run-id="{before}"]')
        await first.signal(signal.SIGTERM)
        await page.wait_for_selector("#connection.down")
        second: ServerProcess = await server_process(
            "--retry-ms", "200", database=first.database, port=first.port
        )
        async with httpx.AsyncClient(base_url=second.url) as client:
            after = await running_run(client)
            await append(client, before, END)
        await page.wait_for_selector(f'tr[data-run-id="{after}"]', timeout=10_000)
        await page.wait_for_selector(f'tr[data-run-id="{before}"][data-status="completed"]')
        await page.wait_for_selector("#connection.live")
        assert await page.locator(f'tr[data-run-id="{before}"]').count() == 1
        assert await page.locator(f'tr[data-run-id="{after}"]').count() == 1
