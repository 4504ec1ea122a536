"""Run durations, time to first token and failed callbacks, counted when their events commit.

The facts come from the fold (a run's creation and first start are in its state, not in the
ending event), on the writer thread, before the commit; an event may still be rolled back
there (a refused append in the same group), so each fact is held, keyed by its event, until
the store's commit listener sees that very event committed. Events another process committed
(a second server on the same database) never pass this server's fold: each server counts the
endings its own writer committed, and the deployment's figure is the sum over servers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from api.server.metrics import Metrics
from eventstore import AgentEvent, EventType
from projections import TERMINAL, RunState

__all__ = ["RunObservations"]

Observe = Callable[[Metrics], None]


class RunObservations:
    """The ``FoldWatcher`` of the server's ``RunProjection`` and its store's commit listener."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._held: dict[int, tuple[AgentEvent, Observe]] = {}
        """``id(event)`` → the event (kept alive, so the id is not reused) and its fact."""

    def folded(self, event: AgentEvent, before: RunState | None, after: RunState) -> None:
        """On the writer thread: note what ``event`` tells, if anything."""
        observe = _fact(event, before, after)
        if observe is not None:
            with self._lock:
                self._held[id(event)] = (event, observe)

    def committed(self, events: Sequence[AgentEvent]) -> None:
        """On the loop, with a group this store's writer committed (in id order)."""
        for event in events:
            if event.event_type == EventType.CALLBACK_ATTEMPTED:
                self._callback_attempted(event)
        with self._lock:
            if not self._held:  # the common case: nothing this group told is held
                return
            facts = [self._held.pop(id(e), (e, None))[1] for e in events]
            self._forget_rolled_back(events[-1].id)
        for observe in facts:
            if observe is not None:
                observe(self._metrics)

    def _forget_rolled_back(self, head: int) -> None:
        """Facts of events numbered up to ``head`` that did not commit were rolled back (their
        ids went to the events that did): groups after this one number theirs above it."""
        for key in [k for k, (event, _) in self._held.items() if event.id <= head]:
            del self._held[key]

    def _callback_attempted(self, event: AgentEvent) -> None:
        status = event.payload.get("status_code")
        if status is not None and 200 <= status < 300:
            return
        self._metrics.callback_attempts_failed.inc()
        if event.payload.get("final"):
            self._metrics.callbacks_failed.inc()


def _fact(event: AgentEvent, before: RunState | None, after: RunState) -> Observe | None:
    """A run's ending (its duration, by status) or its first step (the time since its first
    start): nothing else is observed."""
    if event.event_type == EventType.RUN_STATUS_CHANGED:
        if after.status not in TERMINAL or after.total_duration_ns is None:
            return None
        status, seconds = after.status.value, after.total_duration_ns / 1e9
        return lambda m: m.run_duration.labels(status).observe(seconds)
    if event.event_type == EventType.STEP_COMPLETED:
        if before is None or before.num_steps > 0 or after.started_at is None:
            return None
        waited = _seconds_between(after.started_at, event.created_at)
        return lambda m: m.time_to_first_token.observe(waited)
    return None


def _seconds_between(start: str, end: str) -> float:
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
