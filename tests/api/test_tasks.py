"""Stopping background tasks: every task is waited for, even when one had already failed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from api._tasks import cancel_and_wait

pytestmark = pytest.mark.anyio


async def test_a_task_that_had_failed_does_not_keep_the_others_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fail() -> None:
        raise RuntimeError("the database went away")

    cleaned_up = asyncio.Event()

    async def run_until_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    failed = asyncio.create_task(fail(), name="failed-read")
    running = asyncio.create_task(run_until_cancelled(), name="running-read")
    await asyncio.wait([failed], timeout=5)
    with caplog.at_level(logging.WARNING, logger="runtrack.tasks"):
        await cancel_and_wait([failed, running])
    assert running.cancelled()
    assert cleaned_up.is_set()
    assert "failed-read had failed when it was stopped" in caplog.text
    assert "the database went away" in caplog.text
