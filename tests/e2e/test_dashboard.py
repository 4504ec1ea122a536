"""The dashboard in headless Chromium: live board, status panel actions, restarts, screenshots."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from .browser import fresh_contexts
from .conftest import ProcessFactory, ServerProcess, create_key

pytestmark = pytest.mark.anyio
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
END = {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module-wide, so that the module shares one Chromium


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


WATCH_ROWS = """() => {
    window.rowSeenAt = {};
    new MutationObserver(() => {
        for (const row of document.querySelectorAll("tr[data-run-id]")) {
            window.rowSeenAt[row.dataset.runId] ??= Date.now();
        }
    }).observe(document.body, { childList: true, subtree: true });
}"""


CHART_COUNTS_ARE = """(expected) => {
  const prefix = "Durations of finished runs: ";
  const chart = [...document.querySelectorAll("figure[aria-label]")]
    .find((e) => e.getAttribute("aria-label").startsWith(prefix));
  if (!chart) return false;
  const parts = chart.getAttribute("aria-label").slice(prefix.length).split(", ");
  return JSON.stringify(parts.map((p) => Number(p.split(": ")[1]))) === JSON.stringify(expected);
}"""
"""True once the durations chart's description lists ``expected`` counts, bucket by bucket."""


async def test_the_board_shows_new_runs_and_their_status_live(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        page = await browser.new_page()
        await page.goto(server.url + "/")
        await page.wait_for_selector("#connection.live")
        await page.evaluate(WATCH_ROWS)
        asked_at_ms = time.time() * 1000
        run_id = (await client.post("/v1/runs", json={"agent_id": "dash-agent"})).json()["id"]
        await page.wait_for_selector(f'tr[data-run-id="{run_id}"][data-status="queued"]')
        seen_at_ms = await page.evaluate(f"window.rowSeenAt[{run_id!r}]")
        assert seen_at_ms >= asked_at_ms  # drawn live by the stream (its latency: bench.sse)
        elapsed = page.locator(f'tr[data-run-id="{run_id}"] td.elapsed')
        assert re.fullmatch(r"\d+\.\ds", await elapsed.inner_text())  # ticking while queued

        await client.post("/v1/runs/claim", json={"worker_id": "w"})
        await page.wait_for_selector(f'tr[data-run-id="{run_id}"][data-status="running"]')
        await append(client, run_id, END)
        await page.wait_for_selector(f'tr[data-run-id="{run_id}"][data-status="completed"]')
        await page.get_by_role("img", name="Durations of finished runs").wait_for()
        # the chart shows the server's histogram: one finished run, in whichever bucket its
        # duration fell (a slow machine can take over a second between claim and completion)
        stats = (await client.get("/v1/runs/stats")).json()
        expected = [bucket["count"] for bucket in stats["durations"]]
        assert sum(expected) == 1
        await page.wait_for_function(CHART_COUNTS_ARE, arg=expected)
        await page.locator('.counts [data-status="completed"]:has-text("1")').wait_for()
        await page.locator("figure svg rect.f-completed").first.wait_for()
        await page.locator("figure svg rect.f-events").first.wait_for()
        await screenshot(page, "board")
        await page.set_viewport_size({"width": 400, "height": 800})
        await screenshot(page, "board-narrow")


async def test_board_filters_come_from_and_go_to_the_address(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        done = await running_run(client)
        await append(client, done, END)
        waiting = (await client.post("/v1/runs", json={"agent_id": "dash-agent"})).json()["id"]
        page = await browser.new_page()
        await page.goto(f"{server.url}/#/?status=completed")
        await page.wait_for_selector(f'tr[data-run-id="{done}"]')
        assert await page.locator(f'tr[data-run-id="{waiting}"]').count() == 0
        assert await page.get_by_role("combobox", name="status").input_value() == "completed"
        await page.get_by_role("combobox", name="status").select_option("queued")
        await page.wait_for_selector(f'tr[data-run-id="{waiting}"]')
        await page.get_by_role("textbox", name="agent").fill("dash-agent")
        await page.get_by_role("textbox", name="agent").press("Enter")
        await page.wait_for_function("location.hash === '#/?status=queued&agent=dash-agent'")
        assert await page.locator(f'tr[data-run-id="{done}"]').count() == 0


async def test_older_runs_on_demand_and_time_travel_from_the_keyboard(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process("--run-create-rate", "1000")  # 52 runs at once: past a burst
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        ids = [
            (await client.post("/v1/runs", json={"agent_id": "many"})).json()["id"]
            for _ in range(52)
        ]
        page = await browser.new_page()
        await page.goto(f"{server.url}/")
        await page.wait_for_selector(f'tr[data-run-id="{ids[-1]}"]')
        assert await page.locator("tr[data-run-id]").count() == 50
        older = page.get_by_role("button", name="Show older runs")
        await older.click()
        await page.wait_for_selector(f'tr[data-run-id="{ids[0]}"]')
        assert await page.locator("tr[data-run-id]").count() == 52
        await older.wait_for(state="hidden")

        await page.goto(f"{server.url}/#/runs/{ids[0]}")
        await page.get_by_text("All events").click()  # the event list starts collapsed
        entry = page.get_by_role("button", name="run_created").first
        await entry.focus()
        await page.keyboard.press(" ")
        await page.wait_for_selector('pre:has-text("\\"status\\": \\"queued\\"")')


async def test_cancel_and_resume_from_the_status_panel(
    chromium_browser: Browser, server_process: ProcessFactory
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
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
            {"event_type": "tool_started", "payload": {"tool_call_id": "t1", "name": "upload"}},
            {"event_type": "tool_finished", "payload": {"tool_call_id": "t1", "name": "upload"}},
            {"event_type": "child_run_started", "payload": {"child_run_id": "run-child"}},
            {
                "event_type": "run_status_changed",
                "payload": {"stop_reason": "error", "detail": "disk full"},
            },
        )
        await page.goto(f"{server.url}/#/runs/{second}")
        await page.wait_for_selector("text=Next: retry the upload")
        await page.wait_for_selector("text=Error: disk full")
        await page.get_by_text("All events").click()  # the event list starts collapsed
        finished = page.locator('.timeline li[data-type="tool_finished"]')
        assert re.fullmatch(r"#\d+ tool_finished upload \d+ ms", await finished.inner_text())
        child = page.locator('.timeline li[data-type="child_run_started"] a')
        assert await child.get_attribute("href") == "#/runs/run-child"
        await screenshot(page, "run-failed")
        await page.get_by_role("button", name="Resume from last checkpoint").click()
        await page.wait_for_selector('.panel[data-status="resuming"]')
        await page.locator(".timeline li").first.click()  # the run as it was when created
        await page.wait_for_selector('pre:has-text("\\"status\\": \\"queued\\"")')
        await page.goto(f"{server.url}/#/conversations/c-resume")
        await page.wait_for_selector('.panel[data-status="resuming"]')
        await screenshot(page, "conversation")


async def test_answer_a_waiting_run_and_see_its_progress_from_the_status_panel(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        page = await browser.new_page()
        run_id = await running_run(client, conversation_id="c-ask")
        await page.goto(f"{server.url}/#/runs/{run_id}")
        await page.wait_for_selector('.panel[data-status="running"]')
        patch = {"progress": 2, "total": 8}
        await append(
            client, run_id, {"event_type": "metadata_updated", "payload": {"patch": patch}}
        )
        bar = page.get_by_role("progressbar", name="progress 2 / 8")
        await bar.wait_for()  # live: the run channel's event re-reads the run
        assert (await bar.get_attribute("value"), await bar.get_attribute("max")) == ("2", "8")
        ask = {"question_id": "q-1", "question": "Deploy to production?", "choices": ["yes", "no"]}
        await append(
            client,
            run_id,
            {"event_type": "human_input_requested", "payload": ask},
            {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}},
        )
        await page.wait_for_selector('.panel[data-status="waiting_on_human"] .question')
        assert await page.locator(".panel .question").inner_text() == "Deploy to production?"
        await screenshot(page, "run-waiting-on-human")
        await page.get_by_role("textbox", name="your answer").fill("yes, after 6pm")
        await page.get_by_role("button", name="Send answer").click()
        await page.wait_for_selector('.panel[data-status="queued"]')
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
        answers = [e["payload"] for e in events if e["event_type"] == "human_input"]
        assert answers == [
            {"question_id": "q-1", "response": "yes, after 6pm", "answered_by": None}
        ]

        await client.post("/v1/runs/claim", json={"worker_id": "w"})
        again = {"question_id": "q-2", "question": "Roll back?", "choices": ["yes", "no"]}
        await append(
            client,
            run_id,
            {"event_type": "human_input_requested", "payload": again},
            {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}},
        )
        await page.goto(f"{server.url}/#/conversations/c-ask")
        await page.get_by_role("button", name="no", exact=True).click()  # a choice, at once
        await page.wait_for_selector('.panel[data-status="queued"]')
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
        answers = [e["payload"]["response"] for e in events if e["event_type"] == "human_input"]
        assert answers == ["yes, after 6pm", "no"]


async def test_the_conversation_page_cancels_the_conversations_run(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        page = await browser.new_page()
        run_id = await running_run(client, conversation_id="c-stop")
        await page.goto(f"{server.url}/#/conversations/c-stop")
        async with page.expect_request("**/v1/conversations/c-stop/cancel") as posted:
            await page.get_by_role("button", name="Cancel").click()
        assert (await posted.value).method == "POST"
        await page.wait_for_selector("text=(cancel requested)")
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
        assert [e["event_type"] for e in events].count("cancel_requested") == 1
        assert (await client.get(f"/v1/runs/{run_id}")).json()["cancel_requested"] is True


async def test_the_board_survives_a_server_restart_without_duplicate_rows(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    first = await server_process("--retry-ms", "200")
    async with httpx.AsyncClient(base_url=first.url) as client:
        history = await running_run(client)
        await append(client, history, END)
        head = int((await client.get("/readyz")).json()["head_id"])
    async with fresh_contexts(chromium_browser) as browser:
        page = await browser.new_page()
        firehose: list[str] = []
        page.on(
            "request",
            lambda request: (
                firehose.append(request.url) if "visibility=user" in request.url else None
            ),
        )
        await page.goto(first.url + "/")
        await page.wait_for_selector(f'tr[data-run-id="{history}"][data-status="completed"]')
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
        # The board follows only what comes after the listing it loaded, never the history.
        assert firehose[0].endswith(f"/v1/events?visibility=user&after_event_id={head}")


async def test_a_server_with_keys_asks_for_one_and_the_board_streams_with_it(
    chromium_browser: Browser, server_process: ProcessFactory, tmp_path: Path
) -> None:
    database = str(tmp_path / "keys.db")
    token = await create_key(database, "operator")
    server = await server_process(database=database)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url, headers=headers) as client,
    ):
        page = await browser.new_page()
        await page.goto(server.url + "/")
        dialog = page.get_by_role("dialog", name="API key")
        await dialog.wait_for()
        await screenshot(page, "login")
        key_field = dialog.get_by_label("This server needs an API key.")
        await key_field.fill("rtk_000000000000_not-a-key")
        await dialog.get_by_role("button", name="Sign in").click()
        await dialog.get_by_role("alert").filter(has_text="refused").wait_for()
        await key_field.fill(token)
        await dialog.get_by_role("button", name="Sign in").click()
        await dialog.wait_for(state="hidden")
        await page.wait_for_selector("#connection.live")
        run_id = await running_run(client)
        await page.wait_for_selector(f'tr[data-run-id="{run_id}"][data-status="running"]')
        assert await page.evaluate("sessionStorage.getItem('runtrack-key')") == token
        await page.goto(f"{server.url}/#/runs/{run_id}")
        switch = page.get_by_label("visibility")
        await switch.wait_for()
        options = await switch.locator("option").all_inner_texts()
        assert options == ["user", "operator"]  # an operator key cannot ask for internal events


async def test_a_half_typed_answer_survives_the_panel_redrawing(
    chromium_browser: Browser,
    server_process: ProcessFactory,
) -> None:
    """Events keep arriving while a person types: the panel is redrawn, the draft stays."""
    server = await server_process()
    async with (
        fresh_contexts(chromium_browser) as browser,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        page = await browser.new_page()
        run_id = await running_run(client)
        ask = {"question_id": "q-1", "question": "Which region?"}
        waits = {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}}
        await append(client, run_id, {"event_type": "human_input_requested", "payload": ask}, waits)
        await page.goto(f"{server.url}/#/runs/{run_id}")
        field = page.get_by_role("textbox", name="your answer")
        await field.click()
        await page.keyboard.type("eu-")
        patch = {
            "event_type": "metadata_updated",
            "payload": {"patch": {"progress": 1, "total": 3}},
        }
        await append(client, run_id, patch)
        await page.get_by_role("progressbar", name="progress 1 / 3").wait_for()  # redrawn
        await page.keyboard.type("west")  # the focus carried over too
        assert await field.input_value() == "eu-west"
        await page.get_by_role("button", name="Send answer").click()
        await page.wait_for_selector('.panel[data-status="queued"]')
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["items"]
        assert [e["payload"]["response"] for e in events if e["event_type"] == "human_input"] == [
            "eu-west"
        ]
