"""Offline verification: exports, archive segments and a SQLite file's live part as one chain.

No server and no store: files are read as they are. Each source is walked in id order and the
sources join where their ids meet (they may overlap: an export of the whole log and the live
part of the database both hold the newest events; where they overlap they must agree). A
redacted line (another organization's event in an organization's export: id and hashes only)
is checked for its links; its content hash cannot be recomputed. Signed heads are checked by
``HeadChecks``. The first bad event is named, with the file it is in and why.
"""

from __future__ import annotations

import abc
import gzip
import hashlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from .appending import EVENT_COLUMNS
from .chain import canonical_json, event_hash
from .heads import HeadChecks
from .records import GENESIS_HASH, AgentEvent, decode_json

__all__ = ["Broken", "OfflineReport", "Source", "archive_sources", "open_sources", "verify_sources"]


class Line(msgspec.Struct):
    """One line of an export or a segment: a whole event, or a redacted one (id and hashes)."""

    id: int
    prev_hash: str
    hash: str
    redacted: bool = False
    organization_id: str = ""
    run_id: str = ""
    conversation_id: str = ""
    sequence: int = 0
    event_type: str = ""
    visibility: str = ""
    payload: msgspec.Raw = msgspec.Raw()
    created_at: str = ""


_decode_line = msgspec.json.Decoder(Line).decode


class Broken(Exception):
    """A break in the chain: the event it is at and why."""

    def __init__(self, event_id: int, reason: str) -> None:
        super().__init__(reason)
        self.event_id, self.reason = event_id, reason


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
    first_bad_event_id: int | None = None
    reason: str | None = None
    source: str | None = None
    """The file the break was found in."""


class Source(abc.ABC):
    """Lines of one file in id order; ``first`` and ``start`` are read before the walk."""

    name: str
    first: int = 0
    """The first event's id (0: the source holds none)."""
    start: str | None = None
    """The hash before the first event when the source says so (a manifest, an anchor)."""

    @abc.abstractmethod
    def lines(self) -> Iterator[Line]: ...

    def close_check(self, last: Line | None, count: int) -> None:  # noqa: B027 - most claim nothing
        """After its last line: what the source claims about its end (a manifest's)."""


class ExportFile(Source):
    """An ``events export`` file: JSON lines."""

    def __init__(self, path: Path) -> None:
        self.name, self._path = str(path), path
        with path.open("rb") as lines:
            first = next((line for line in lines if line.strip()), None)
        self.first = 0 if first is None else _parse(first, 1, self.name).id

    def lines(self) -> Iterator[Line]:
        expected = self.first
        with self._path.open("rb") as lines:
            for raw in lines:
                if raw.strip():
                    line = _parse(raw, expected, self.name)
                    expected = line.id + 1
                    yield line


class Segment(Source):
    """An archive segment: ``events-…jsonl.gz`` and its manifest, checked against each other."""

    def __init__(self, manifest_path: Path) -> None:
        self.name = str(manifest_path)
        self._gz = manifest_path.with_name(
            manifest_path.name.removesuffix(".manifest.json") + ".jsonl.gz"
        )
        try:
            self.manifest: dict[str, Any] = decode_json(manifest_path.read_bytes())
            self.first = int(self.manifest["first_id"])
            self.start = str(self.manifest["prev_hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Broken(0, f"{self.name} is not a segment manifest: {exc}") from exc

    def lines(self) -> Iterator[Line]:
        self._check_digest()
        self.name = str(self._gz)
        expected = self.first
        try:
            with gzip.open(self._gz, "rb") as lines:
                for raw in lines:
                    line = _parse(raw, expected, self.name)
                    expected = line.id + 1
                    yield line
        except (OSError, EOFError) as exc:  # a segment that is not gzip, or cut short
            raise Broken(expected, f"{self._gz.name} cannot be read: {exc}") from exc

    def _check_digest(self) -> None:
        digest = hashlib.sha256()
        try:
            with self._gz.open("rb") as segment:
                while chunk := segment.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise Broken(self.first, f"the segment of {self.name} cannot be read: {exc}") from exc
        if digest.hexdigest() != self.manifest.get("sha256"):
            raise Broken(
                self.first,
                f"the SHA-256 of {self._gz.name} is not its manifest's: the segment was changed",
            )

    def close_check(self, last: Line | None, count: int) -> None:
        claims = self.manifest
        if last is None or last.id != claims.get("last_id") or count != claims.get("count"):
            at = self.first if last is None else last.id + 1
            raise Broken(at, f"{self._gz.name} does not hold the events its manifest lists")
        if last.hash != claims.get("last_hash"):
            raise Broken(last.id, "the segment's last hash is not its manifest's")


class SqliteLive(Source):
    """The live part of a SQLite database: from its archive anchor (``log_anchor``) on."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            self._read_bounds()
        except sqlite3.Error as exc:
            self._db.close()
            raise Broken(0, f"{path} is not a runtrack SQLite database: {exc}") from exc

    def _read_bounds(self) -> None:
        anchor = self._anchor()
        self._after = 0 if anchor is None else anchor[0]
        self.start = None if anchor is None else anchor[1]
        row = self._db.execute("SELECT MIN(id) FROM events WHERE id > ?", (self._after,)).fetchone()
        self.first = self._after + 1 if anchor is not None else int(row[0] or 0)
        counter = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        found = counter.fetchone()
        self._assigned = int(found[0]) if found else 0

    def _anchor(self) -> tuple[int, str] | None:
        tables = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_anchor'"
        ).fetchall()
        if not tables:
            return None
        row = self._db.execute("SELECT cut_id, cut_hash FROM log_anchor").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def lines(self) -> Iterator[Line]:
        try:
            yield from self._rows()
        finally:
            self._db.close()

    def _rows(self) -> Iterator[Line]:
        rows = self._db.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id", (self._after,)
        )
        for row in rows:
            if self.start is not None and row[0] == self._after + 1 and row[9] != self.start:
                raise Broken(row[0], "the first live event does not follow the archive anchor")
            yield Line(
                id=row[0],
                prev_hash=row[9],
                hash=row[10],
                organization_id=row[1],
                run_id=row[2],
                conversation_id=row[3],
                sequence=row[4],
                event_type=row[5],
                visibility=row[6],
                payload=msgspec.Raw(row[7].encode("utf-8")),
                created_at=row[8],
            )

    def close_check(self, last: Line | None, count: int) -> None:
        end = 0 if last is None else last.id
        if self._assigned > end:
            raise Broken(end + 1, "events at the end of the log are missing")


def archive_sources(directory: Path) -> list[Source]:
    """Every segment of an archive directory, by its manifest."""
    manifests = sorted(directory.glob("events-*.manifest.json"))
    if not manifests:
        raise Broken(0, f"{directory} holds no segment manifest (events-*.manifest.json)")
    return [Segment(path) for path in manifests]


def _parse(raw: bytes, expected: int, name: str) -> Line:
    try:
        line = _decode_line(raw)
    except msgspec.DecodeError as exc:
        raise Broken(expected, f"a line of {name} is not an event: {exc}") from exc
    if not line.redacted and (not line.created_at or not line.payload or not line.event_type):
        raise Broken(line.id, f"event {line.id} in {name} lacks some of its fields")
    return line


@dataclass
class _Walk:
    """Where the chain stands: its tip, and the hashes kept for sources that join earlier."""

    heads: HeadChecks
    after: int = 0
    """Events up to this id are not asked for (``audit verify --after``)."""
    joins: set[int] = field(default_factory=set)
    """Ids whose hash a later source starts after (first id - 1 of each source)."""
    joined: dict[int, str] = field(default_factory=dict)
    first_id: int = 0
    tip_id: int = 0
    tip_hash: str = GENESIS_HASH
    events: int = 0
    redacted: int = 0

    def start_hash(self, source: Source) -> str:
        """The hash ``source``'s first event must follow."""
        before = source.first - 1
        if self.first_id == 0:
            self.first_id = source.first
            self.tip_id = before
            self.tip_hash = self._first_start(source)
            return self.tip_hash
        if before > self.tip_id:
            raise Broken(self.tip_id + 1, "this event is in none of the given files")
        if before == 0:
            return GENESIS_HASH
        return self.tip_hash if before == self.tip_id else self.joined[before]

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

    def walk(self, source: Source) -> None:
        expected_id, expected_prev = source.first, self.start_hash(source)
        last: Line | None = None
        count = 0
        for line in source.lines():
            self._check(line, expected_id, expected_prev)
            if line.id in self.joins:
                self.joined[line.id] = line.hash
            if line.id > self.tip_id:
                self._extend(line)
            elif line.id == self.tip_id and line.hash != self.tip_hash:
                raise Broken(line.id, "this event differs from its copy in another file")
            expected_id, expected_prev, last, count = line.id + 1, line.hash, line, count + 1
        source.close_check(last, count)

    def _check(self, line: Line, expected_id: int, expected_prev: str) -> None:
        if line.id != expected_id:
            if line.id > expected_id:
                raise Broken(expected_id, "this event is missing here: removed or reordered")
            raise Broken(line.id, f"event {line.id} comes after event {expected_id - 1}: reordered")
        if expected_prev and line.prev_hash != expected_prev:
            raise Broken(
                line.id,
                "prev_hash does not match the previous event: an event was removed or reordered",
            )
        if not line.redacted and _content_hash(line) != line.hash:
            raise Broken(line.id, "hash does not match the event's content: the event was modified")

    def _extend(self, line: Line) -> None:
        self.events += 1
        self.redacted += line.redacted
        problem = None
        if line.redacted:
            problem = self.heads.see_hash(line.id, line.hash)
        elif line.event_type == "chain_head" or line.id in self.heads.ids:
            problem = self.heads.see(_event(line))
        if problem is not None:
            raise Broken(problem.event_id, problem.reason)
        self.tip_id, self.tip_hash = line.id, line.hash


def _content_hash(line: Line) -> str:
    payload = bytes(line.payload).decode("utf-8")
    digest = _hash_with(line, payload)
    if digest != line.hash:  # a payload written in another JSON form: hash its canonical one
        digest = _hash_with(line, canonical_json(decode_json(payload)))
    return digest


def _hash_with(line: Line, payload_json: str) -> str:
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


def open_sources(files: Sequence[Path], archive: Path | None, sqlite: Path | None) -> list[Source]:
    """The sources named on the command line, in the order their first ids take."""
    sources: list[Source] = [ExportFile(path) for path in files]
    if archive is not None:
        sources += archive_sources(archive)
    if sqlite is not None:
        sources.append(SqliteLive(sqlite))
    return sorted((s for s in sources if s.first > 0), key=lambda s: s.first)


def verify_sources(
    sources: Sequence[Source], heads: HeadChecks, *, after: int = 0
) -> OfflineReport:
    """Walk ``sources`` (``open_sources``) as one chain; the first break, if any. The chain
    starts at event 1, or where a source proves what came before, or (unproven) anywhere past
    ``after``."""
    walk = _Walk(heads, after=after, joins={source.first - 1 for source in sources})
    current: Source | None = None
    try:
        for current in sources:
            walk.walk(current)
        current = None
        problem = heads.finish(walk.first_id, walk.tip_id)
        if problem is not None:
            raise Broken(problem.event_id, problem.reason)
    except Broken as broken:
        return _report(walk, broken, None if current is None else current.name)
    return _report(walk, None, None)


def _report(walk: _Walk, broken: Broken | None, name: str | None) -> OfflineReport:
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
        first_bad_event_id=None if broken is None else broken.event_id,
        reason=None if broken is None else broken.reason,
        source=name,
    )
