"""Offline verification: exports, archive segments and a SQLite file's live part as one chain.

No server and no store: files are read as they are (``offline_sources.py``). The sources are
walked together, one event id at a time: every file that holds an id gives its line, each line
is checked (its link to the hash before it, its hash in its chain version: ``chain_versions``),
and the copies of one id must be the same line, hash and link, so a file nested inside another's
range is compared line by line and a forged copy is named where it differs. A redacted line
(another organization's event in an organization's export: id and hashes only) is checked for
its link; a v2 one's hash is recomputed from its ``prev_hash`` and ``content_hash``. Signed
heads are checked by ``HeadChecks``. The first bad event is named, with the file it is in and
why.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain

from .chain import ChainBreak, canonical_json, event_hash
from .chain_versions import ChainVersions
from .heads import CHAIN_HEAD, HeadChecks, HeadProblem
from .offline_hash import v2_as_written
from .offline_parallel import Plan, Stretch, items_of, split
from .offline_proof import Coverage
from .offline_sources import Broken, ExportFile, Line, Source
from .records import GENESIS_HASH, AgentEvent, decode_json

__all__ = ["OfflineReport", "Plan", "verify_sources"]


@dataclass(frozen=True)
class OfflineReport:
    ok: bool
    events: int
    """Events verified (each once, where sources overlap)."""
    redacted: int
    """Of those, redacted lines: links checked, content not."""
    first_id: int
    head_id: int
    head_hash: str
    signed_heads: int
    """Signed heads whose signature verified with the given keys (0 without keys)."""
    signed_through: int
    kept_heads: int = 0
    """Kept heads the walk reached with their hash."""
    unproven: int = 0
    """Whole events no head binds (a redacted line between, or none after): self-consistent
    only (``offline_proof.py``)."""
    unproven_ranges: tuple[tuple[int, int], ...] = ()
    """The stretches (first, last id) holding them, the first ``MAX_RANGES`` of them."""
    unproven_ranges_complete: bool = True
    first_bad_event_id: int | None = None
    reason: str | None = None
    source: str | None = None
    """The file the break was found in."""


_DATABASE_CUT = (
    "the database ends at event {}, but another file holds event {}: "
    "events at the end of the log were removed"
)


@dataclass
class _Reading:
    """A source being read: its lines (and stretches workers checked), and how far it got."""

    source: Source
    items: Iterator[Line | Stretch]
    last: Line | None = None
    count: int = 0
    lines: Iterator[Line | Stretch] = field(init=False)
    """What is left to read: ``items``, after the lines of a stretch not taken whole."""

    def __post_init__(self) -> None:
        self.lines = self.items

    def close(self) -> None:
        """Stop reading (the workers too, if any)."""
        close = getattr(self.items, "close", None)
        if close is not None:
            close()
        self.source.close()

    def read_first(self, more: Iterator[Line | Stretch]) -> None:
        self.lines = chain(more, self.lines)


@dataclass
class _Walk:
    """Where the chain stands: its tip, the sources still to open and those being read."""

    heads: HeadChecks
    pending: deque[Source]
    after: int = 0
    """Events up to this id are not asked for (``audit verify --after``)."""
    plan: Plan = field(default_factory=Plan)
    reading: list[_Reading] = field(default_factory=list)
    current: Source | None = None
    """The source a break is in."""
    first_id: int = 0
    tip_id: int = 0
    tip_hash: str = GENESIS_HASH
    events: int = 0
    redacted: int = 0
    coverage: Coverage = field(default_factory=Coverage)
    kept_ids: Mapping[int, object] = field(default_factory=dict)
    anchored: int = 0
    """How far the heads vouched when the coverage last heard of it."""

    def run(self) -> None:
        if not self.pending:
            return
        first = self.pending[0]
        self.first_id, self.tip_id = first.first, first.first - 1
        self.current = first
        self.coverage.start(first.first)
        self.tip_hash = self._first_start(first)
        self.kept_ids = self.heads.ids
        _raise(self.heads.opening_problem())
        while self.pending or self.reading:
            self._open(self.tip_id + 1)
            if len(self.reading) == 1:
                self._alone(self.reading[0])
            else:
                self._step(self.tip_id + 1)
        self.current = None

    def _open(self, at: int) -> None:
        while self.pending and self.pending[0].first == at:
            source = self.pending.popleft()
            self.current = source
            where = f"{source.name} (its chain_version)"
            _raise(self.heads.versions.learn(source.chain_v2_from, at, where))
            items = items_of(source, frozenset(self.heads.ids), self.plan)
            self.reading.append(_Reading(source, items))

    def _first_start(self, source: Source) -> str:
        """The hash the chain starts from: the genesis at event 1; past it, the hash the source
        names before its first event (an archive's manifest or anchor), or none at all when the
        caller asked for the events after an id only. Anything else lost the log's start."""
        before = source.first - 1
        if before == 0:
            return GENESIS_HASH
        if source.start is not None:
            return source.start
        if before <= self.after:
            return ""  # not proven: the caller asked for the events after ``after`` only
        raise Broken(
            self.after + 1,
            f"events {self.after + 1} to {before} are in none of the given files: the start of "
            f"the log was removed (or give the files that hold them, or --after {before})",
        )

    def _step(self, at: int) -> None:
        """Event ``at``: each copy read and checked, the copies compared, the chain extended."""
        if not self.reading:
            raise Broken(at, "this event is in none of the given files")
        copies: list[tuple[Source, Line]] = []
        ended: list[Source] = []
        for reading in list(self.reading):
            line = self._next(reading, at)
            if line is None:
                ended.append(reading.source)
            else:
                copies.append((reading.source, line))
        live = next((source for source in ended if source.holds_the_end), None)
        if live is not None and (copies or self.pending):
            self.current = live
            raise Broken(at, _DATABASE_CUT.format(at - 1, at))
        if copies:
            self._extend(self._agreed(at, copies))

    def _alone(self, reading: _Reading) -> None:
        """Lines no other file holds, up to where the next file starts: ``_step`` without the
        comparison, for speed (most of a walk is one file)."""
        self.current = source = reading.source
        until = self.pending[0].first - 1 if self.pending else None
        while (item := next(reading.lines, None)) is not None:
            if isinstance(item, Stretch):
                if self._took(reading, item, until) and item.last_id == until:
                    return
                continue
            line = item
            if reading.count == 0:
                self._check_start(source, line)
            _check(line, self.tip_id + 1, self.tip_hash, self.heads.versions)
            reading.last, reading.count = line, reading.count + 1
            self._extend(line)
            if line.id == until:
                return
        source.close_check(reading.last, reading.count)
        self.reading.remove(reading)
        if source.holds_the_end and self.pending:
            raise Broken(self.tip_id + 1, _DATABASE_CUT.format(self.tip_id, self.tip_id + 1))

    def _took(self, reading: _Reading, stretch: Stretch, until: int | None) -> bool:
        """Take a stretch a worker checked whole, where every check ``_check`` and
        ``_extend`` make of its lines would hold and change nothing but the tip and the
        counts; else leave its lines to be read (its first alone, when only that line's
        checks are in question)."""
        source = reading.source
        assert isinstance(source, ExportFile)
        if (until is not None and stretch.last_id > until) or (
            reading.count == 0 and source.start is not None
        ):
            reading.read_first(source.lines_between(stretch.start, stretch.end, stretch.first_id))
            return False
        joins = stretch.first_id == self.tip_id + 1 and (
            not self.tip_hash or stretch.first_prev == self.tip_hash
        )
        if not (joins and self.heads.versions.past_cutover(stretch.first_id)):
            reading.read_first(split(source, stretch))
            return False
        self.events += stretch.count
        self.redacted += stretch.redacted
        reading.last, reading.count = stretch.last(), reading.count + stretch.count
        self.tip_id, self.tip_hash = stretch.last_id, stretch.last_hash
        return True

    def _next(self, reading: _Reading, at: int) -> Line | None:
        """``reading``'s line for event ``at``, checked; None when it ended before it."""
        self.current = source = reading.source
        line = next(reading.lines, None)
        if isinstance(line, Stretch):  # copies are compared line by line
            assert isinstance(source, ExportFile)
            lines = source.lines_between(line.start, line.end, line.first_id)
            line = next(lines)
            reading.read_first(lines)
        if line is None:
            source.close_check(reading.last, reading.count)
            self.reading.remove(reading)
            return None
        if reading.count == 0:
            self._check_start(source, line)
        _check(line, at, self.tip_hash, self.heads.versions)
        reading.last, reading.count = line, reading.count + 1
        return line

    @staticmethod
    def _check_start(source: Source, line: Line) -> None:
        if source.start is not None and line.prev_hash != source.start:
            raise Broken(
                line.id, "the first event does not follow the hash its file names before it"
            )

    def _agreed(self, at: int, copies: list[tuple[Source, Line]]) -> Line:
        """The one line every copy of event ``at`` is (a whole one where some are redacted)."""
        chosen = copies[0][1]
        for source, line in copies[1:]:
            if (line.hash, line.prev_hash) != (chosen.hash, chosen.prev_hash):
                self.current = source
                raise Broken(at, "this event differs from its copy in another file")
            if chosen.redacted and not line.redacted:
                chosen = line
        return chosen

    def _extend(self, line: Line) -> None:
        self.events += 1
        self.redacted += line.redacted
        problem = None
        if line.redacted:
            if not line.content_hash:  # a v1 line: nothing binds what lies before it
                self.coverage.redacted(line.id)
            problem = self.heads.see_hash(line.id, line.hash)
        elif line.event_type == CHAIN_HEAD or line.id in self.kept_ids:
            problem = self.heads.see(_event(line))
        if problem is not None:
            raise Broken(problem.event_id, problem.reason)
        if self.heads.anchored_through > self.anchored:
            self.anchored = self.heads.anchored_through
            self.coverage.bound(self.anchored)
        self.tip_id, self.tip_hash = line.id, line.hash

    def close(self) -> None:
        """Close every source still open (a walk that stopped at a break)."""
        for reading in self.reading:
            reading.close()
        for source in self.pending:
            source.close()


def _check(line: Line, expected_id: int, expected_prev: str, versions: ChainVersions) -> None:
    if line.id != expected_id:
        if line.id > expected_id:
            raise Broken(expected_id, "this event is missing here: removed or reordered")
        raise Broken(line.id, f"event {line.id} comes after event {expected_id - 1}: reordered")
    if expected_prev and line.prev_hash != expected_prev:
        raise Broken(
            line.id,
            "prev_hash does not match the previous event: an event was removed or reordered",
        )
    if line.redacted:
        _raise(versions.redacted(line.id, line.prev_hash, line.hash, line.content_hash))
    elif not (versions.past_cutover(line.id) and v2_as_written(line) == line.hash):
        _raise(_whole(line, versions))  # another version, another JSON form, or modified


def _raise(problem: ChainBreak | HeadProblem | None) -> None:
    if problem is not None:
        raise Broken(problem.event_id, problem.reason)


def _whole(line: Line, versions: ChainVersions) -> ChainBreak | None:
    return versions.whole(line.id, line.hash, lambda version: _hash_from_content(line, version))


def _hash_from_content(line: Line, version: int) -> str:
    payload = bytes(line.payload).decode("utf-8")
    digest = _hash_with(line, payload, version)
    if digest != line.hash:  # a payload written in another JSON form: hash its canonical one
        digest = _hash_with(line, canonical_json(decode_json(payload)), version)
    return digest


def _hash_with(line: Line, payload_json: str, version: int) -> str:
    return event_hash(
        id=line.id,
        organization_id=line.organization_id,
        run_id=line.run_id,
        conversation_id=line.conversation_id,
        sequence=line.sequence,
        event_type=line.event_type,
        visibility=line.visibility,
        payload_json=payload_json,
        created_at=line.created_at,
        prev_hash=line.prev_hash,
        version=version,
    )


def _event(line: Line) -> AgentEvent:
    return AgentEvent(
        line.id,
        line.organization_id,
        line.run_id,
        line.conversation_id,
        line.sequence,
        line.event_type,
        line.visibility,
        bytes(line.payload).decode("utf-8"),
        line.created_at,
        line.prev_hash,
        line.hash,
    )


def verify_sources(
    sources: Sequence[Source], heads: HeadChecks, *, after: int = 0, plan: Plan | None = None
) -> OfflineReport:
    """Walk ``sources`` (``open_sources``) as one chain; the first break, if any. The chain
    starts at event 1, or where a source proves what came before, or (unproven) anywhere past
    ``after``. ``plan``: when worker processes check a large export's lines
    (``offline_parallel.py``)."""
    sorted_sources = deque(sorted(sources, key=lambda s: s.first))
    walk = _Walk(heads, sorted_sources, after=after, plan=plan or Plan())
    try:
        walk.run()
        problem = heads.finish(walk.first_id, walk.tip_id)
        if problem is not None:
            raise Broken(problem.event_id, problem.reason)
    except Broken as broken:
        return _report(walk, broken, None if walk.current is None else walk.current.name)
    finally:
        walk.close()
    return _report(walk, None, None)


def _report(walk: _Walk, broken: Broken | None, name: str | None) -> OfflineReport:
    coverage = walk.coverage
    coverage.finish(walk.tip_id)
    return OfflineReport(
        ok=broken is None,
        events=walk.events,
        redacted=walk.redacted,
        first_id=walk.first_id,
        head_id=walk.tip_id,
        head_hash=walk.tip_hash,
        signed_heads=walk.heads.signed,
        signed_through=walk.heads.signed_through,
        kept_heads=walk.heads.kept_reached,
        unproven=coverage.unproven,
        unproven_ranges=tuple(coverage.ranges),
        unproven_ranges_complete=not coverage.truncated,
        first_bad_event_id=None if broken is None else broken.event_id,
        reason=None if broken is None else broken.reason,
        source=name,
    )
