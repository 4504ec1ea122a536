"""Archive segments: a range of the log as a gzip of JSON lines, and its manifest beside it.

A segment is written to a temporary name, fsynced, renamed and its directory fsynced, then read
back and checked against its manifest, all before the events may leave the database: a crash at
any point leaves either no segment (the events are still live) or a whole one. The format is
the export form (``AgentEvent.to_json``, one per line, in id order), so ``audit verify`` reads
a segment as it reads an export.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .chain import canonical_json
from .records import AgentEvent

__all__ = [
    "READ_CACHE_BYTES",
    "READ_CACHE_SLICES",
    "SEGMENT_FORMAT",
    "ArchiveReader",
    "Batch",
    "Manifest",
    "SegmentError",
    "list_manifests",
    "read_segment",
    "segment_first_id",
    "segment_name",
    "write_segment",
]

SEGMENT_FORMAT = 1
_NAME = re.compile(r"^events-(\d{12})-(\d{12})\.manifest\.json$")
_COMPRESSION = 1
"""gzip level 1: a segment of 5,000 of bench.append's events compressed in 6.4 ms at level 1
and 14.4 ms at level 6, for a tenth less size (docs/benchmarks.md, "Notes from the code")."""


class SegmentError(Exception):
    """A segment that does not match its manifest, or cannot be read."""


@dataclass(frozen=True)
class Manifest:
    """What a segment holds, as written beside it (``*.manifest.json``)."""

    first_id: int
    last_id: int
    count: int
    prev_hash: str
    last_hash: str
    sha256: str
    organizations: dict[str, int]
    created_at: str

    @property
    def name(self) -> str:
        return segment_name(self.first_id, self.last_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SEGMENT_FORMAT,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "count": self.count,
            "prev_hash": self.prev_hash,
            "last_hash": self.last_hash,
            "sha256": self.sha256,
            "organizations": self.organizations,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != SEGMENT_FORMAT:
            raise SegmentError(f"unknown segment format {data.get('format')!r}")
        return cls(
            int(data["first_id"]),
            int(data["last_id"]),
            int(data["count"]),
            str(data["prev_hash"]),
            str(data["last_hash"]),
            str(data["sha256"]),
            {str(k): int(v) for k, v in data["organizations"].items()},
            str(data["created_at"]),
        )


def segment_name(first_id: int, last_id: int) -> str:
    """The segment's file name (the manifest's is ``.manifest.json`` instead of ``.jsonl.gz``)."""
    return f"events-{first_id:012d}-{last_id:012d}.jsonl.gz"


def _manifest_path(directory: Path, first_id: int, last_id: int) -> Path:
    return directory / f"events-{first_id:012d}-{last_id:012d}.manifest.json"


@dataclass(frozen=True)
class Batch:
    """A range of the log to archive: its export lines (``AgentEvent.to_json`` and a newline
    each, in id order) and what its manifest says of it."""

    lines: bytes
    first_id: int
    last_id: int
    count: int
    prev_hash: str
    last_hash: str
    last_created_at: str
    organizations: dict[str, int]


def write_segment(directory: Path, batch: Batch) -> Manifest:
    """Write ``batch`` as one durable segment and its manifest, and read both back."""
    directory.mkdir(parents=True, exist_ok=True)
    data = gzip.compress(batch.lines, compresslevel=_COMPRESSION, mtime=0)
    manifest = Manifest(
        batch.first_id,
        batch.last_id,
        batch.count,
        batch.prev_hash,
        batch.last_hash,
        hashlib.sha256(data).hexdigest(),
        batch.organizations,
        datetime.now(UTC).isoformat(),
    )
    text = json.dumps(manifest.to_json(), sort_keys=True, indent=1).encode()
    _durable_write(
        directory,
        (directory / manifest.name, data),
        (_manifest_path(directory, batch.first_id, batch.last_id), text),
    )
    _crash_point("segment_written")
    _check_written(directory, manifest, batch.lines)
    return manifest


def _check_written(directory: Path, written: Manifest, lines: bytes) -> None:
    """Read both files back: the manifest as written, the segment's digest, and its lines
    byte for byte as built from the events (the same proof as decoding them one by one, for a
    fraction of the time)."""
    path = _manifest_path(directory, written.first_id, written.last_id)
    if Manifest.from_json(json.loads(path.read_bytes())) != written:
        raise SegmentError(f"{written.name}: its manifest does not read back as written")
    data = (directory / written.name).read_bytes()
    if hashlib.sha256(data).hexdigest() != written.sha256 or gzip.decompress(data) != lines:
        raise SegmentError(f"{written.name}: does not read back as written")


def _durable_write(directory: Path, *files: tuple[Path, bytes]) -> None:
    """Each file to a temporary name and fsynced, then all renamed and ``directory`` fsynced
    once: each name holds all or nothing, and every one is durable on return. One fsync of
    the directory for the segment and its manifest, not one each: a segment's fsyncs were
    most of its writing (docs/benchmarks.md, "the archive's rate")."""
    temporaries = []
    for path, data in files:
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporaries.append((temporary, path))
        _crash_point("segment_temporary")
    for temporary, path in temporaries:
        os.replace(temporary, path)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_segment(directory: Path, manifest: Manifest) -> Iterator[AgentEvent]:
    """The segment's events in id order, after checking its SHA-256 against the manifest."""
    for line in _segment_lines(directory, manifest).splitlines():
        yield _event_from_json(json.loads(line))


def _segment_lines(directory: Path, manifest: Manifest) -> bytes:
    """The segment's export lines, decompressed once its SHA-256 is the manifest's."""
    try:
        data = (directory / manifest.name).read_bytes()
    except OSError as exc:
        raise SegmentError(f"{manifest.name}: cannot be read ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise SegmentError(f"{manifest.name}: its SHA-256 differs from the manifest")
    return gzip.decompress(data)


def _event_from_json(data: dict[str, Any]) -> AgentEvent:
    payload = canonical_json(data["payload"])
    return AgentEvent.from_row(
        (
            data["id"],
            data["organization_id"],
            data["run_id"],
            data["conversation_id"],
            data["sequence"],
            data["event_type"],
            data["visibility"],
            payload,
            data["created_at"],
            data["prev_hash"],
            data["hash"],
        )
    )


_ANY_FILE = re.compile(r"^events-(\d{12})-(\d{12})\.(jsonl\.gz|manifest\.json)(\.tmp)?$")


def segment_first_id(file_name: str) -> int | None:
    """The first id of the segment a file of the archive directory belongs to (None: not ours)."""
    match = _ANY_FILE.match(file_name)
    return None if match is None else int(match.group(1))


def list_manifests(directory: Path) -> list[Manifest]:
    """Every segment's manifest in ``directory``, by first id (an absent directory: none)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if _NAME.match(path.name):
            found.append(Manifest.from_json(json.loads(path.read_text())))
    return sorted(found, key=lambda m: m.first_id)


READ_CACHE_BYTES = 16 * 1024 * 1024
"""What the runs' slices an ``ArchiveReader`` keeps may weigh in all, in their export lines'
bytes: the events built from them held 2.7 times that (tracemalloc, docs/benchmarks.md), so
about 45 MB at most."""
READ_CACHE_SLICES = 1_024
"""How many (segment, run) slices it keeps at most, whatever their weight."""


class ArchiveReader:
    """Reads archived events of one run from a directory of segments (a server's
    ``--archive-dir``). The manifests are listed once and again only when a range asked for
    lies past the last one known.

    Each segment read keeps the run's events in it (its *slice*) in a small LRU, bounded by
    ``READ_CACHE_BYTES`` and ``READ_CACHE_SLICES``: the pages of a long archived run (``GET
    /v1/runs/{id}/events``, each asking for what follows its cursor) then read and decompress
    each segment once, not once per page. Segments are never rewritten once their events left
    the log, so a slice cannot go stale. Thread-safe (the routes read it from worker threads).
    """

    def __init__(
        self,
        directory: Path,
        *,
        cache_bytes: int = READ_CACHE_BYTES,
        cache_slices: int = READ_CACHE_SLICES,
    ) -> None:
        self.directory = directory
        self._manifests: list[Manifest] = []
        self._slices: OrderedDict[tuple[str, str], _Slice] = OrderedDict()
        self._bounds = (cache_bytes, cache_slices)
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self.segment_reads = 0
        """Segments read and decompressed (the cache's misses)."""

    def covering(self, first_id: int, last_id: int) -> list[Manifest]:
        """The segments holding any of ``first_id..last_id`` (SegmentError for a hole)."""
        with self._lock:
            if not self._manifests or self._manifests[-1].last_id < last_id:
                self._manifests = list_manifests(self.directory)
            known = self._manifests
        found = [m for m in known if m.last_id >= first_id and m.first_id <= last_id]
        expected = first_id
        for manifest in found:
            if manifest.first_id > expected:
                raise SegmentError(f"no segment holds event {expected} in {self.directory}")
            expected = manifest.last_id + 1
        if expected <= last_id:
            raise SegmentError(f"no segment holds event {expected} in {self.directory}")
        return found

    def run_events(self, run_id: str, first_id: int, last_id: int) -> list[AgentEvent]:
        """``run_id``'s events with ids in ``first_id..last_id``, in id order."""
        return [
            event
            for manifest in self.covering(first_id, last_id)
            for event in self._slice(manifest, run_id).events
            if first_id <= event.id <= last_id
        ]

    def _slice(self, manifest: Manifest, run_id: str) -> _Slice:
        key = (manifest.name, run_id)
        with self._lock:
            found = self._slices.get(key)
            if found is not None:
                self._slices.move_to_end(key)
                return found
        found = _Slice.of(run_events_in(self.directory, manifest, run_id))
        with self._lock:
            self.segment_reads += 1
            self._keep(key, found)
        return found

    def _keep(self, key: tuple[str, str], found: _Slice) -> None:
        """Hold ``found`` as the most recent slice, evicting the least recent beyond the
        bounds (a slice larger than the whole bound is returned but not kept)."""
        max_bytes, max_slices = self._bounds
        if found.weight > max_bytes or key in self._slices:
            return
        self._slices[key] = found
        self._cached_bytes += found.weight
        while self._cached_bytes > max_bytes or len(self._slices) > max_slices:
            _, evicted = self._slices.popitem(last=False)
            self._cached_bytes -= evicted.weight


@dataclass(frozen=True)
class _Slice:
    """One run's events in one segment, and what they weigh (their lines' bytes)."""

    events: tuple[AgentEvent, ...]
    weight: int

    @classmethod
    def of(cls, lines: list[tuple[bytes, AgentEvent]]) -> _Slice:
        return cls(tuple(event for _, event in lines), sum(len(line) for line, _ in lines) + 64)


def run_events_in(
    directory: Path, manifest: Manifest, run_id: str
) -> list[tuple[bytes, AgentEvent]]:
    """``run_id``'s events in the segment with their lines, after checking its SHA-256.

    Only lines that hold the run's id as the export writes its ``run_id`` field are decoded
    (``_candidates``), then the decoded field is compared: a payload holding the same text can
    only add a candidate, never hide an event of the run."""
    data = _segment_lines(directory, manifest)
    needle = _run_id_needle(run_id)
    lines = data.splitlines() if needle is None else _candidates(data, needle)
    found = []
    for line in lines:
        event = _event_from_json(json.loads(line))
        if event.run_id == run_id:
            found.append((line, event))
    return found


_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:@+-]+")
"""Ids that every JSON writer (Python's, SQLite's ``json_quote``, PostgreSQL's ``to_json``, or
the segment's lines written as stored for ``plain_names``) writes as they are, between quotes."""


def _run_id_needle(run_id: str) -> bytes | None:
    """The bytes every line of ``run_id``'s events holds (None: an id that some writer might
    escape, for which every line is decoded)."""
    if _PLAIN_ID.fullmatch(run_id) is None:
        return None
    return f'"run_id":"{run_id}",'.encode()


def _candidates(data: bytes, needle: bytes) -> Iterator[bytes]:
    """The lines of ``data`` that contain ``needle``, found by ``bytes.find`` (a JSON line holds
    no raw newline: one in a string is escaped)."""
    at = data.find(needle)
    while at >= 0:
        begin = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        yield data[begin:end]
        at = data.find(needle, end)


def _crash_point(name: str) -> None:
    """Test hook: ``RUNTRACK_ARCHIVE_CRASH_AT=name`` kills the process here (SIGKILL), so the
    crash tests stop an archive at each named step, as a power cut or an OOM kill would."""
    if os.environ.get("RUNTRACK_ARCHIVE_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
