"""Runs by status at each of the last N seconds, replayed from the log's status changes.

The board's "runs by status, last minute" chart needs the minute before the page opened. The
read model knows only each run's current status, so the runs whose status changed inside the
window (created ones included) are replayed from their ``run_status_changed`` events; every
other run held its current status through the whole window. The SQL lives in ``queries.py``;
this module is the pure replay.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from eventstore import RunStatus

__all__ = ["StatusSample", "TouchedRun", "replay"]

_CREATED = RunStatus.QUEUED.value
"""Every run starts queued (``state._created``)."""


@dataclass(frozen=True)
class StatusSample:
    at: str
    """The moment counted (the log's fixed-width UTC timestamp)."""
    by_status: dict[str, int]


@dataclass
class TouchedRun:
    """A run whose status changed inside the window: when it was created and its changes
    (``created_at``, new status), oldest first."""

    created_at: str
    changes: list[tuple[str, str]] = field(default_factory=list)


def replay(
    moments: Sequence[str],
    steady: Iterable[tuple[str, int]],
    touched: Iterable[TouchedRun],
    allowed: Sequence[str] | None = None,
) -> list[StatusSample]:
    """Counts at each of ``moments`` (ascending): ``steady`` (status, count) pairs hold at all
    of them; each touched run counts under the status it had then, from its creation on.
    ``allowed`` keeps only those statuses (a status filter); zero counts are left out."""
    base = Counter(dict(steady))
    difference: dict[str, list[int]] = {}
    for run in touched:
        _add_segments(run, moments, difference)
    samples = []
    running = Counter[str]()
    for index, at in enumerate(moments):
        for status, steps in difference.items():
            running[status] += steps[index]
        counts = base + running  # Counter addition keeps only positive counts
        shown = {s: n for s, n in sorted(counts.items()) if allowed is None or s in allowed}
        samples.append(StatusSample(at, shown))
    return samples


def _add_segments(
    run: TouchedRun, moments: Sequence[str], difference: dict[str, list[int]]
) -> None:
    """Mark, per status, the first moment the run counts under it (the first at or after the
    change) and the first it no longer does (the first at or after the next change)."""
    spans = [(run.created_at, _CREATED), *run.changes]
    for position, (since, status) in enumerate(spans):
        first = bisect_left(moments, since)
        following = position + 1 < len(spans)
        end = bisect_left(moments, spans[position + 1][0]) if following else len(moments)
        if first < end:
            steps = difference.setdefault(status, [0] * (len(moments) + 1))
            steps[first] += 1
            steps[end] -= 1
