"""What offline verification reads: exports, archive segments, a SQLite file's live part.

Each ``Source`` yields its lines in id order and says, before the walk, its first id and (when
it knows) the hash before it; afterwards it checks what it claims about its end (a manifest's
last id, count and hash; a database's id counter). The walk over them is ``offline.py``.
"""

from __future__ import annotations

import abc
import gzip
import hashlib
import sqlite3
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .appending import EVENT_COLUMNS
from .records import decode_json

__all__ = [
    "Broken",
    "ExportFile",
    "Line",
    "Segment",
    "Source",
    "SqliteLive",
    "archive_sources",
    "decode_line",
    "open_sources",
]


class Line(msgspec.Struct):
    """One line of an export or a segment: a whole event, or a redacted one (id and hashes)."""

    id: int
    prev_hash: str
    hash: str
    redacted: bool = False
    content_hash: str = ""
    """A redacted chain v2 line's content hash: what its link is checked with."""
    organization_id: str = ""
    run_id: str = ""
    conversation_id: str = ""
    sequence: int = 0
    event_type: str = ""
    visibility: str = ""
    payload: msgspec.Raw = msgspec.Raw()
    created_at: str = ""


decode_line = msgspec.json.Decoder(Line).decode


class Broken(Exception):
    """A break in the chain: the event it is at and why."""

    def __init__(self, event_id: int, reason: str) -> None:
        super().__init__(reason)
        self.event_id, self.reason = event_id, reason


class Source(abc.ABC):
    """Lines of one file in id order; ``first`` and ``start`` are read before the walk."""

    name: str
    first: int = 0
    """The first event's id (0: the source holds none)."""
    start: str | None = None
    """The hash before the first event when the source says so (a manifest, an anchor)."""
    holds_the_end: bool = False
    """The live log: no other file may hold an event past its last."""
    chain_v2_from: int | None = None
    """Where chain v2 starts, when the source records it (a database)."""

    @abc.abstractmethod
    def lines(self) -> Iterator[Line]: ...

    def close(self) -> None:  # noqa: B027 - most hold nothing open between lines
        """Release what the source holds open (a walk that stopped early calls it)."""

    def close_check(self, last: Line | None, count: int) -> None:  # noqa: B027 - most claim nothing
        """After its last line: what the source claims about its end (a manifest's)."""


class ExportFile(Source):
    """An ``events export`` file: JSON lines."""

    def __init__(self, path: Path) -> None:
        self.name, self._path = str(path), path
        with path.open("rb") as lines:
            first = next((line for line in lines if line.strip()), None)
        self.first = 0 if first is None else _parse(first, 1, self.name).id

    @property
    def path(self) -> Path:
        return self._path

    def lines(self) -> Iterator[Line]:
        expected = self.first
        with self._path.open("rb") as lines:
            for raw in lines:
                if raw.strip():
                    line = _parse(raw, expected, self.name)
                    expected = line.id + 1
                    yield line

    def lines_between(self, start: int, end: int, expected: int) -> Generator[Line, None, None]:
        """The lines in bytes ``start`` to ``end`` (``start`` a line's first byte), as
        ``lines`` reads them: ``expected`` is the id after the line before ``start``."""
        with self._path.open("rb") as lines:
            lines.seek(start)
            at = start
            for raw in lines:
                if at >= end:
                    return
                at += len(raw)
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

    holds_the_end = True

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
        self.chain_v2_from = self._cutover()

    def _cutover(self) -> int | None:
        if not self._has_table("chain_version"):
            return None
        row = self._db.execute("SELECT v2_from FROM chain_version").fetchone()
        return None if row is None else int(row[0])

    def _has_table(self, name: str) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchall()
        return bool(found)

    def _anchor(self) -> tuple[int, str] | None:
        if not self._has_table("log_anchor"):
            return None
        row = self._db.execute("SELECT cut_id, cut_hash FROM log_anchor").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def lines(self) -> Iterator[Line]:
        try:
            yield from self._rows()
        finally:
            self._db.close()

    def close(self) -> None:
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
        line = decode_line(raw)
    except msgspec.DecodeError as exc:
        raise Broken(expected, f"a line of {name} is not an event: {exc}") from exc
    if not line.redacted and (not line.created_at or not line.payload or not line.event_type):
        raise Broken(line.id, f"event {line.id} in {name} lacks some of its fields")
    return line


def open_sources(files: Sequence[Path], archive: Path | None, sqlite: Path | None) -> list[Source]:
    """The sources named on the command line, in the order their first ids take."""
    sources: list[Source] = [ExportFile(path) for path in files]
    if archive is not None:
        sources += archive_sources(archive)
    if sqlite is not None:
        sources.append(SqliteLive(sqlite))
    return sorted((s for s in sources if s.first > 0), key=lambda s: s.first)
