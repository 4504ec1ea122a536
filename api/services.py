"""Background services of the server: the reconciler and the callback deliverer.

Both run only while this server holds the ``services`` leadership, so with several servers on
one database each pass and each delivery is made by one of them. A failed pass or delivery is
logged and retried on the next tick; it never stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx

from eventstore.leadership import Leadership
from eventstore.store import BaseEventStore
from projections.callbacks import CallbackPolicy, Delivery, due_deliveries, record_attempt
from projections.reconciler import Thresholds, reconcile

from ._tasks import cancel_and_wait
from .settings import Settings

__all__ = ["Services"]

logger = logging.getLogger("runtrack.services")
MAX_PARALLEL_DELIVERIES = 16


class Services:
    def __init__(self, store: BaseEventStore, leadership: Leadership, settings: Settings) -> None:
        self._store = store
        self._leadership = leadership
        self._settings = settings
        self._thresholds = Thresholds(
            settings.heartbeat_timeout, settings.queue_timeout, settings.cancel_timeout
        )
        self.policy = CallbackPolicy(
            max_attempts=settings.callback_max_attempts,
            base_delay=settings.callback_retry_base,
            secret=settings.callback_secret,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> Services:
        self._http = httpx.AsyncClient(timeout=self.policy.timeout, follow_redirects=False)
        self._tasks = [
            asyncio.create_task(self._every(self._settings.reconcile_seconds, self._reconcile)),
            asyncio.create_task(self._every(self._settings.callback_poll_seconds, self._deliver)),
        ]
        return self

    async def aclose(self) -> None:
        await cancel_and_wait(self._tasks)
        if self._http is not None:
            await self._http.aclose()

    async def _every(self, seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await self._leadership.wait_until_leader()
            try:
                await work()
            except Exception:
                logger.exception("background pass failed; retrying on the next tick")
            await asyncio.sleep(seconds)

    async def _reconcile(self) -> None:
        report = await reconcile(self._store, self._thresholds)
        if report.changed:
            logger.info(
                "reconciled: %d timed out, %d queue timeouts, %d stale cancels",
                len(report.timed_out),
                len(report.queue_timed_out),
                len(report.cancelled),
            )

    async def _deliver(self) -> None:
        deliveries = await due_deliveries(self._store, self.policy, datetime.now(UTC))
        gate = asyncio.Semaphore(MAX_PARALLEL_DELIVERIES)

        async def one(delivery: Delivery) -> None:
            async with gate:
                await self._send(delivery)

        await asyncio.gather(*(one(d) for d in deliveries))

    async def _send(self, delivery: Delivery) -> None:
        assert self._http is not None
        url = delivery.run.callback_url or ""
        status_code, error = None, None
        try:
            response = await self._http.post(
                url, content=delivery.body, headers=delivery.headers(self.policy, datetime.now(UTC))
            )
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}".rstrip(": ")
        await record_attempt(
            self._store, delivery, self.policy, status_code=status_code, error=error
        )
