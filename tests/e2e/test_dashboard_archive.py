"""An archived run in the dashboard (headless Chromium): listed on the board and shown on its
page, its timeline read from the segments, or a note naming the segment where the server has
no ``--archive-dir``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .browser import chromium
from .conftest import ProcessFactory
from .test_archive_crash import archive_cli
from .test_dashboard import END, append, running_run, screenshot

pytestmark = pytest.mark.anyio


async def test_an_archived_run_shows_on_the_board_and_its_page(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    server = await server_process("--archive-dir", str(archive))
    async with chromium() as browser, httpx.AsyncClient(base_url=server.url) as client:
        run_id = await running_run(client)
        message = {
            "event_type": "message_created",
            "payload": {"role": "assistant", "content": "x"},
        }
        await append(client, run_id, message, END)
        head = (await client.get(f"/v1/runs/{run_id}")).json()["last_event_id"]
        code, out = await archive_cli(server.database, archive, head + 1)
        assert code == 0, out
        assert f"the live log starts at event {head + 1}" in out

        page = await browser.new_page()
        await page.goto(f"{server.url}/")
        await page.wait_for_selector(f'tr[data-run-id="{run_id}"]:has-text("completed")')
        await page.goto(f"{server.url}/#/runs/{run_id}")
        await page.get_by_text("All events").click()  # the event list starts collapsed
        await page.wait_for_selector('li[data-type="message_created"]')
        assert await page.locator('li[data-type="run_created"]').count() == 1
        await screenshot(page, "archived-run")

        without = await server_process(database=server.database)
        await page.goto(f"{without.url}/#/runs/{run_id}")
        note = page.get_by_role("note")
        await note.wait_for()
        assert "events-000000000001-" in (await note.text_content() or "")
        await page.get_by_text("Completed").first.wait_for()
        assert await page.locator('li[data-type="message_created"]').count() == 0
