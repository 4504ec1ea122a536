"""Garbage-collector settings for a long-running server process.

Each open stream keeps objects the cyclic collector tracks (its tasks, coroutines, events and
cancel scopes), and a full collection walks all of them, during which no stream is written and
no append answered: with many streams those pauses decide the fan-out's latency (figures in
docs/benchmarks.md, "Notes from the code").

What is built at start-up (modules, the app) lives as long as the process, so it is frozen
out of collections. Full collections then run a tenth as often. The young generations keep
CPython's thresholds, so short-lived cycles are still freed promptly; only cyclic garbage that
survives into the oldest generation waits longer.
"""

from __future__ import annotations

import gc

__all__ = ["FULL_COLLECTION_EVERY", "tune_collector"]

FULL_COLLECTION_EVERY = 100
"""Middle-generation collections between two full ones (CPython's default is 10)."""


def tune_collector() -> None:
    """Freeze what exists now and space out full collections. Call once, after start-up."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
