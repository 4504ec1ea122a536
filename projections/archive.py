"""Where an archive may cut the log, and the archive itself, as run semantics decide it.

The store moves a prefix to segments (``EventStore.archive_through``); this module decides how
far: never past the first event of a run that may still need its events (not terminal,
resumable, or with a callback still to deliver), nor past a durable consumer's cursor. Runs of
the system organization never hold the cut back: they are perpetual server bookkeeping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventstore import (
    ARCHIVE_BATCH,
    SYSTEM_ORGANIZATION,
    EventStore,
    RunStatus,
    format_timestamp,
)

from .lifecycle import TERMINAL

__all__ = ["ArchiveReport", "Hold", "archive", "cut_for_age", "parse_age", "plan_cut"]

_AGE = re.compile(r"^([1-9][0-9]*)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_OPEN_STATUSES = tuple(sorted(status.value for status in RunStatus if status not in TERMINAL))


@dataclass(frozen=True)
class Hold:
    """Something that keeps the cut below ``event_id``: a run, or a consumer's cursor."""

    event_id: int
    reason: str


@dataclass
class ArchiveReport:
    requested: int
    """The last id asked for (``--before N`` asks for N - 1)."""
    cut: int
    """The last id archived now or before (the anchor afterwards)."""
    events: int = 0
    segments: list[str] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``: ValueError naming the expected form otherwise."""
    match = _AGE.match(text.strip())
    if match is None:
        raise ValueError(f"an age is a whole number and a unit s, m, h or d (30d); got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


async def cut_for_age(store: EventStore, age: timedelta) -> int:
    """The last id created before now - ``age``. Ids are commit-ordered and each event's time is
    at least its predecessor's, so a binary search over ids finds it in a few point reads."""
    threshold = format_timestamp(datetime.now(UTC) - age)
    low, high = await store.oldest_event_id() - 1, await store.head()
    while low < high:
        middle = (low + high + 1) // 2
        rows = await store.fetchall("SELECT created_at FROM events WHERE id = ?", (middle,))
        if rows and str(rows[0][0]) < threshold:
            low = middle
        else:
            high = middle - 1
    return low


async def plan_cut(store: EventStore, requested: int) -> tuple[int, list[Hold]]:
    """How far an archive may go towards ``requested``, and what holds it back."""
    holds = await _run_holds(store) + await _consumer_holds(store)
    blocking = [hold for hold in holds if hold.event_id <= requested]
    cut = min([requested, *(hold.event_id - 1 for hold in blocking)])
    return cut, blocking


async def _run_holds(store: EventStore) -> list[Hold]:
    marks = ", ".join("?" for _ in _OPEN_STATUSES)
    rows = await store.fetchall(
        "SELECT run_id, status, resume_available, callback_pending, created_event_id FROM runs "
        f"WHERE organization_id <> ? AND (status IN ({marks}) OR resume_available <> 0 "
        "OR callback_pending <> 0) ORDER BY created_event_id LIMIT 1",
        (SYSTEM_ORGANIZATION, *_OPEN_STATUSES),
    )
    holds = []
    for run_id, status, resumable, callback, created in rows:
        why = "is resumable" if resumable else "has a callback to deliver" if callback else ""
        reason = f"run {run_id} ({status}) {why or 'has not ended'}"
        holds.append(Hold(int(created), reason))
    return holds


async def _consumer_holds(store: EventStore) -> list[Hold]:
    return [
        Hold(cursor + 1, f"consumer {name} has passed only event {cursor}")
        for name, cursor in sorted((await store.consumer_cursors()).items())
    ]


async def archive(
    store: EventStore, requested: int, directory: Path, *, batch: int = ARCHIVE_BATCH
) -> ArchiveReport:
    """Archive up to ``requested`` or as far as the holds allow, into ``directory``."""
    requested = min(requested, await store.head())
    cut, holds = await plan_cut(store, requested)
    manifests = await store.archive_through(cut, directory, batch=batch)
    anchor = await store.anchor()
    report = ArchiveReport(requested, 0 if anchor is None else anchor.cut_id, holds=holds)
    report.events = sum(m.count for m in manifests)
    report.segments = [m.name for m in manifests]
    return report
