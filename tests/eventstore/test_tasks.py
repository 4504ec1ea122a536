"""Stopping tasks: every task is waited for, even when one had already failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio
import pytest

from eventstore.tasks import cancel_and_wait, stop_requested

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


async def test_a_caller_in_a_cancelled_anyio_scope_cancels_the_tasks_once() -> None:
    """anyio cancels a task in a cancelled scope again on every loop turn (a stream whose
    client left, under sse-starlette). The tasks being stopped must see one cancellation and
    finish their clean-up: a second cancel inside psycopg's cancel-and-drain closes the
    connection."""
    stopped, cleaned_up = asyncio.Event(), asyncio.Event()
    cancels = 0

    async def slow_clean_up() -> None:
        nonlocal cancels
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancels += 1
            stopped.set()
            for _ in range(50):  # clean-up spanning many loop turns
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    cancels += 1
            cleaned_up.set()
            raise

    stopping = asyncio.create_task(slow_clean_up())
    async with anyio.create_task_group() as group:

        async def stream() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await cancel_and_wait([stopping])

        group.start_soon(stream)
        await asyncio.sleep(0)
        group.cancel_scope.cancel()  # the client has gone
    assert stopped.is_set()
    assert cleaned_up.is_set()
    assert cancels == 1


async def test_a_cancel_the_task_never_saw_is_still_a_stop_request() -> None:
    """As when ``asyncio.wait_for`` (Python 3.11) returns its result instead of raising: the
    task goes on, and ``stop_requested`` is how it learns it should not."""
    started = asyncio.Event()

    async def swallow_the_cancel() -> tuple[bool, bool]:
        before = stop_requested()
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # what the library did
            await asyncio.Event().wait()
        return before, stop_requested()

    task = asyncio.create_task(swallow_the_cancel())
    await started.wait()
    task.cancel()
    assert await task == (False, True)
