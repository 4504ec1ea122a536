"""Background services of the server: the reconciler, the callback deliverer, retention, the
head signer and, when the ``OTEL_EXPORTER_OTLP_*`` variables name a collector, the trace
exporter (``telemetry/``).

All run only while this server holds the ``services`` leadership, so with several servers on
one database each pass and each delivery is made by one of them. A failed pass is logged and
retried on the next tick; it never stops the loop. Every delivery attempt, whatever happened to
it, is recorded (``callbacks/sender.py``); deliveries run concurrently under per-organization
and total bounds (``callbacks/dispatch.py``) through a network layer that connects only to
permitted addresses (``callbacks/network.py``). With a signing key, the leader signs the chain's
head every ``chain_head_seconds`` (``eventstore/heads.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from api.server.callbacks.addresses import AddressPolicy
from api.server.callbacks.dispatch import Dispatcher
from api.server.callbacks.sender import CallbackSender
from api.server.settings import Settings, callback_networks
from api.server.telemetry import TraceExporter, otlp_target
from eventstore import (
    AppendSignedHead,
    ArchiveReader,
    EventStore,
    HeadSigner,
    Leadership,
    cancel_and_wait,
)
from projections import archive, cut_for_age, parse_age
from projections.callbacks import CallbackPolicy, Delivery, record_attempt
from projections.reconciler import Thresholds, reconcile

__all__ = ["Services"]

logger = logging.getLogger("runtrack.services")
EXPORT_POLL_SECONDS = 1.0
"""How often the trace exporter looks for new events once it has sent everything: spans reach
the collector within about a second of their end event."""


class Services:
    def __init__(
        self,
        store: EventStore,
        leadership: Leadership,
        settings: Settings,
        signer: HeadSigner | None = None,
        archive: ArchiveReader | None = None,
    ) -> None:
        self._store = store
        self._signer = signer
        self._leadership = leadership
        self._settings = settings
        self._thresholds = Thresholds(
            settings.heartbeat_timeout, settings.queue_timeout, settings.cancel_timeout
        )
        self.policy = CallbackPolicy(
            max_attempts=settings.callback_max_attempts,
            base_delay=settings.callback_retry_base,
            timeout=settings.callback_timeout,
            secret=settings.callback_secret,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._sender = CallbackSender(
            AddressPolicy(callback_networks(settings)),
            deadline=settings.callback_timeout,
            resolvers=settings.callback_concurrency,
        )
        self._dispatcher = Dispatcher(
            store,
            self.policy,
            self._send,
            total=settings.callback_concurrency,
            per_organization=settings.callback_concurrency_per_organization,
        )
        target = otlp_target(os.environ)
        self.exporter = (
            None
            if target is None
            else TraceExporter(
                store,
                target,
                content=settings.otel_content,
                max_request_bytes=settings.otel_max_request_bytes,
                drop_after=settings.otel_drop_after,
                still_leader=lambda: leadership.is_leader,
                archive=archive,
            )
        )

    async def start(self) -> Services:
        every = self._every
        self._tasks = [
            asyncio.create_task(every(self._settings.reconcile_seconds, self._reconcile)),
            asyncio.create_task(
                every(self._settings.callback_poll_seconds, self._dispatcher.dispatch)
            ),
        ]
        if self.exporter is not None:
            self._tasks.append(
                asyncio.create_task(every(EXPORT_POLL_SECONDS, self.exporter.export_pending))
            )
        if self._signer is not None:
            sign = AppendSignedHead(self._signer)
            self._tasks.append(
                asyncio.create_task(every(self._settings.chain_head_seconds, self._sign(sign)))
            )
        if self._settings.retain is not None:
            self._tasks.append(
                asyncio.create_task(every(self._settings.archive_interval, self._retain))
            )
        return self

    def _sign(self, sign: AppendSignedHead) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            await self._store.transact(sign)

        return work

    async def aclose(self) -> None:
        await cancel_and_wait(self._tasks)
        await self._dispatcher.aclose()
        await self._sender.aclose()
        if self.exporter is not None:
            await self.exporter.aclose()

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

    async def _retain(self) -> None:
        """Archive what is older than ``--retain`` (as far as the holds allow)."""
        settings = self._settings
        assert settings.retain is not None  # check_settings: --retain needs --archive-dir
        assert settings.archive_dir is not None
        requested = await cut_for_age(self._store, parse_age(settings.retain))
        report = await archive(self._store, requested, Path(settings.archive_dir))
        if report.events:
            logger.info(
                "archived %d events; the live log starts at %d", report.events, report.cut + 1
            )
        for hold in report.holds:
            logger.info("retention held back at event %d: %s", hold.event_id - 1, hold.reason)

    async def _send(self, delivery: Delivery) -> None:
        url = delivery.run.callback_url or ""
        headers = delivery.headers(self.policy, datetime.now(UTC))
        outcome = await self._sender.send(url, delivery.body, headers)
        await record_attempt(
            self._store,
            delivery,
            self.policy,
            status_code=outcome.status_code,
            error=outcome.error,
            give_up=outcome.give_up,
        )
