"""Runs callback deliveries concurrently, bounded per organization and in total.

Each pass looks at the due deliveries (interleaved by organization, see ``due_deliveries``) and
starts a task for each one that is not already in flight, as long as its organization has fewer
than ``per_organization`` in flight and the server fewer than ``total``. A pass never waits for
a delivery: a slow or hanging receiver holds one of its own organization's slots until the
attempt's deadline, and the next pass hands free slots to whoever is due. So one organization's
receivers can hold at most ``per_organization`` slots, and another organization's delivery
starts on the next pass as long as fewer than ``total`` are in flight (the total is larger than
the per-organization bound, so it takes several organizations' slow receivers to fill it, and
each slot frees within one attempt's deadline). A DNS lookup that outlives its attempt keeps
the slot until it ends (``lookups_settled``), so the lookup threads are bounded the same way.
An attempt that could not be recorded (the store failed) is tried again, after a pause that
doubles each time (``UNRECORDED_PAUSE``), so a lasting failure never spins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from api.server.callbacks.network import lookups_settled
from eventstore import EventStore, cancel_and_wait
from projections.callbacks import CallbackPolicy, Delivery, due_deliveries

__all__ = ["Dispatcher"]

logger = logging.getLogger("runtrack.callbacks")
LOOK_AHEAD_PER_ORGANIZATION = 100
"""Pending deliveries of one organization looked at per pass (its oldest)."""
UNRECORDED_PAUSE = (1.0, 300.0)
"""Seconds before retrying a delivery whose attempt was not recorded: first, and at most."""


class Dispatcher:
    def __init__(
        self,
        store: EventStore,
        policy: CallbackPolicy,
        attempt: Callable[[Delivery], Awaitable[None]],
        *,
        total: int,
        per_organization: int,
        unrecorded_pause: tuple[float, float] = UNRECORDED_PAUSE,
    ) -> None:
        self._store = store
        self._policy = policy
        self._attempt = attempt
        self._total = total
        self._per_organization = per_organization
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._by_organization: Counter[str] = Counter()
        self._finished: set[str] = set()
        """Runs whose attempt ended during this pass's query: their rows may be stale."""
        self._unrecorded_pause = unrecorded_pause
        self._unrecorded: dict[str, tuple[float, float]] = {}
        """Runs whose last attempt was not recorded: (pause, not before ``time.monotonic()``)."""

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def dispatch(self) -> None:
        """One pass: start every due delivery that the bounds let start now."""
        self._finished = set()
        due = await due_deliveries(
            self._store,
            self._policy,
            datetime.now(UTC),
            per_organization=max(LOOK_AHEAD_PER_ORGANIZATION, self._per_organization),
            limit=max(1000, self._total),
        )
        self._forget_unrecorded({delivery.run.run_id for delivery in due})
        for delivery in due:
            if len(self._in_flight) >= self._total:
                return
            if self._may_start(delivery):
                self._start(delivery)

    async def aclose(self) -> None:
        await cancel_and_wait(list(self._in_flight.values()))

    def _may_start(self, delivery: Delivery) -> bool:
        organization = delivery.run.organization_id
        return (
            delivery.run.run_id not in self._in_flight
            and delivery.run.run_id not in self._finished
            and self._unrecorded.get(delivery.run.run_id, (0.0, 0.0))[1] <= time.monotonic()
            and self._by_organization[organization] < self._per_organization
        )

    def _start(self, delivery: Delivery) -> None:
        run = delivery.run
        self._by_organization[run.organization_id] += 1
        task = asyncio.create_task(self._guarded(delivery), name=f"callback {run.run_id}")
        self._in_flight[run.run_id] = task

    async def _guarded(self, delivery: Delivery) -> None:
        run = delivery.run
        try:
            async with lookups_settled():
                await self._attempt(delivery)
            self._unrecorded.pop(run.run_id, None)
        except Exception as exc:  # the attempt stays pending: a later pass tries it again
            pause = self._pause_unrecorded(run.run_id)
            logger.warning(
                "callback for run %s not recorded (%s): trying again in %.0f s",
                run.run_id,
                type(exc).__name__,
                pause,
            )
        finally:
            del self._in_flight[run.run_id]
            self._finished.add(run.run_id)
            self._by_organization[run.organization_id] -= 1
            if not self._by_organization[run.organization_id]:
                del self._by_organization[run.organization_id]

    def _pause_unrecorded(self, run_id: str) -> float:
        first, most = self._unrecorded_pause
        previous = self._unrecorded.get(run_id, (first / 2, 0.0))[0]
        pause = min(most, previous * 2)
        self._unrecorded[run_id] = (pause, time.monotonic() + pause)
        return pause

    def _forget_unrecorded(self, due: set[str]) -> None:
        """Drop the pauses of runs no longer pending (recorded elsewhere, or out of view)."""
        for run_id in [r for r in self._unrecorded if r not in due and r not in self._in_flight]:
            del self._unrecorded[run_id]
