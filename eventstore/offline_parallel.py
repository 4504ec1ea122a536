"""Offline verification on every core: an export's byte ranges checked in worker processes.

Every line carries its ``prev_hash`` and ``hash``, so recomputing a line's hash from its content
needs no other line: that, most of a walk's time, is what the workers do, over ranges of the
file cut at line boundaries. Each range comes back as *stretches* (runs of consecutive lines
that each passed the walk's common case: a whole event hashed with chain v2 as written, or a
redacted v2 line whose link holds; ids consecutive, each ``prev_hash`` the hash before it) and
*spans* of every other line (a chain_head, a kept head's id, a v1 or malformed line, a break),
which the walk reads and checks line by line as it would without workers. The walk takes a
stretch whole only where it joins the chain and its checks would have held (``offline._Walk``),
else it reads the stretch's lines too: the report, first break and all, is the serial one.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

import msgspec

from .chain import link_hash
from .heads import CHAIN_HEAD
from .offline_hash import v2_as_written
from .offline_sources import ExportFile, Line, Source, decode_line

__all__ = ["PARALLEL_FROM_BYTES", "SERIAL", "Plan", "Stretch", "items_of", "split"]

PARALLEL_FROM_BYTES = 32 << 20
"""Smaller exports are walked in one process: forking the workers costs little, but below about
70,000 events they save less than it (docs/benchmarks.md, 2026-12-02)."""
SPAWNED_FROM_BYTES = 128 << 20
"""The same where workers start from a fork server: each imports the package first, 0.3 s of
CPU and 0.5-2 s of wall time on two shared cores (docs/benchmarks.md, 2026-12-02)."""
RANGE_BYTES = 8 << 20
"""Bytes of the file per task: enough to amortise a task, small enough to keep every core busy
to the end and the parent's memory flat."""


@dataclass(frozen=True)
class Plan:
    """How a walk uses worker processes; tests force the parallel path with small numbers."""

    workers: int = 0
    """Worker processes (0: one per core); 1 or fewer cores means no workers."""
    from_bytes: int | None = None
    """Exports smaller than this are walked in one process (None: by the start method)."""
    range_bytes: int = RANGE_BYTES
    context: str = ""
    """The multiprocessing start method; "": fork when the parent runs one thread, else
    forkserver (forking a process with threads can copy a held lock)."""

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def threshold(self) -> int:
        if self.from_bytes is not None:
            return self.from_bytes
        return PARALLEL_FROM_BYTES if self.start_method() == "fork" else SPAWNED_FROM_BYTES

    def start_method(self) -> str:
        if self.context:
            return self.context
        return "fork" if threading.active_count() == 1 else "forkserver"


SERIAL = Plan(from_bytes=1 << 62)
"""One process, whatever the size."""


@dataclass(frozen=True)
class Stretch:
    """Consecutive lines a worker checked whole: bytes ``start`` to ``end`` of the file."""

    first_id: int
    first_prev: str
    last_id: int
    last_hash: str
    count: int
    redacted: int
    start: int
    end: int
    last_raw: bytes

    def last(self) -> Line:
        return decode_line(self.last_raw)


@dataclass(frozen=True)
class Span:
    """Bytes ``start`` to ``end`` of the file: lines the walk reads and checks itself."""

    start: int
    end: int


Found = list[Stretch | Span]


def items_of(source: Source, kept: frozenset[int], plan: Plan) -> Iterator[Line | Stretch]:
    """``source``'s lines, with stretches a pool checked in place of most of them when the
    source is an export large enough to pay for the workers."""
    if not isinstance(source, ExportFile) or plan.worker_count() < 2:
        return source.lines()
    size = source.path.stat().st_size
    if size < plan.threshold():
        return source.lines()
    return _pooled(source, kept, plan, size)


def _pooled(
    source: ExportFile, kept: frozenset[int], plan: Plan, size: int
) -> Iterator[Line | Stretch]:
    expected = source.first
    for item in _checked(source.path, kept, plan, size):
        if isinstance(item, Stretch):
            expected = item.last_id + 1
            yield item
        else:
            for line in source.lines_between(item.start, item.end, expected):
                expected = line.id + 1
                yield line


def _checked(path: Path, kept: frozenset[int], plan: Plan, size: int) -> Iterator[Stretch | Span]:
    """The file's stretches and spans in file order, its ranges checked by a pool (closing
    the iterator early cancels the ranges not started and waits for those running)."""
    step = plan.range_bytes
    ranges = [(start, min(start + step, size)) for start in range(0, size, step)]
    context = multiprocessing.get_context(plan.start_method())
    if plan.start_method() == "forkserver":  # its workers start with this module imported
        context.set_forkserver_preload([__name__])
    check = partial(check_range, str(path), kept)
    workers = min(plan.worker_count(), len(ranges))
    # an executor, not a Pool: a worker that dies (killed, out of memory) fails the walk with
    # BrokenProcessPool where a Pool's results would wait for it forever
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(check, bounds) for bounds in ranges]
        try:
            for future in futures:
                yield from future.result()
        except BrokenProcessPool:
            # the pool fails every pending range itself; cancelling them too races its manager
            # thread, which then raises InvalidStateError (CPython gh-107219, fixed after 3.11)
            raise
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def split(source: ExportFile, stretch: Stretch) -> Iterator[Line | Stretch]:
    """``stretch``'s first line, read, then the rest of it: where the walk could not take it
    whole only because of what its first line sets (the first event, a chain v1 to v2 cutover)."""
    lines = source.lines_between(stretch.start, stretch.end, stretch.first_id)
    head = next(lines)
    lines.close()
    yield head
    if stretch.count > 1:
        yield replace(
            stretch,
            first_id=head.id + 1,
            first_prev=head.hash,
            count=stretch.count - 1,
            redacted=stretch.redacted - head.redacted,
            start=_after_line(source.path, stretch.start),
        )


def _after_line(path: Path, start: int) -> int:
    """The offset after the first non-blank line at or after ``start``."""
    with path.open("rb") as lines:
        lines.seek(start)
        at = start
        for raw in lines:
            at += len(raw)
            if raw.strip():
                break
    return at


@dataclass
class _Run:
    """The stretch being grown in ``check_range``."""

    first: Line
    last: Line
    start: int
    end: int
    last_raw: bytes
    count: int = 1
    redacted: int = 0

    def stretch(self) -> Stretch:
        return Stretch(
            self.first.id, self.first.prev_hash, self.last.id, self.last.hash, self.count,
            self.redacted, self.start, self.end, self.last_raw,
        )  # fmt: skip


def check_range(path: str, kept: frozenset[int], bounds: tuple[int, int]) -> Found:
    """The lines that start in bytes ``bounds`` of ``path``, as stretches and spans."""
    start, end = bounds
    found = _Found()
    with open(path, "rb") as lines:
        at = _first_line_at(lines, start)
        for raw in lines:
            if at >= end:
                break
            after = at + len(raw)
            if raw.strip():
                found.add(_common(raw, kept), raw, at, after)
            at = after
    return found.done()


@dataclass
class _Found:
    """A range's stretches and spans, grown line by line."""

    items: Found = field(default_factory=list)
    run: _Run | None = None
    span: Span | None = None

    def add(self, line: Line | None, raw: bytes, at: int, after: int) -> None:
        run = self.run
        if line is None:
            self._end_run()
            self.span = Span(at if self.span is None else self.span.start, after)
        elif run is not None and line.id == run.last.id + 1 and line.prev_hash == run.last.hash:
            run.last, run.end, run.last_raw = line, after, raw
            run.count += 1
            run.redacted += line.redacted
        else:
            self._end_run()
            self._end_span()
            self.run = _Run(line, line, at, after, raw, redacted=int(line.redacted))

    def done(self) -> Found:
        self._end_run()
        self._end_span()
        return self.items

    def _end_run(self) -> None:
        if self.run is not None:
            self.items.append(self.run.stretch())
            self.run = None

    def _end_span(self) -> None:
        if self.span is not None:
            self.items.append(self.span)
            self.span = None


def _first_line_at(lines: BinaryIO, start: int) -> int:
    """Seek to the first line that starts at or after ``start`` (a line that starts before it
    is the range before's); its offset."""
    if start == 0:
        return 0
    lines.seek(start - 1)
    lines.readline()
    return lines.tell()


def _common(raw: bytes, kept: frozenset[int]) -> Line | None:
    """The line when it is the walk's common case and holds; None for the walk to read."""
    try:
        line = decode_line(raw)
        if line.id in kept:
            return None
        if line.redacted:
            holds = (
                bool(line.content_hash)
                and link_hash(line.prev_hash, line.content_hash) == line.hash
            )
        else:
            holds = (
                bool(line.created_at and line.payload and line.event_type)
                and line.event_type != CHAIN_HEAD
                and v2_as_written(line) == line.hash
            )
    except (msgspec.DecodeError, ValueError):
        return None
    return line if holds else None
