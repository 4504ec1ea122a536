"""Offline verification with worker processes (``eventstore/offline_parallel.py``): the report
is the one-process walk's, field for field, for every kind of tampering.

The threshold is forced to nothing and the ranges to a few lines each, so a log a real store
wrote (two organizations' runs, a signed head every other round) is cut into many ranges checked
by real worker processes; each test verifies the same files both ways and compares.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from eventstore import (
    AgentEvent,
    HeadChecks,
    HeadSigner,
    NewEvent,
    OfflineReport,
    PublicKeys,
    SignedHead,
    canonical_json,
    event_hash,
    generate_key_file,
    open_sources,
    open_store,
    verify_sources,
)
from eventstore.offline_hash import v2_as_written
from eventstore.offline_parallel import SERIAL, Plan, Stretch, items_of
from eventstore.offline_sources import ExportFile, decode_line
from projections import RunProjection
from tests.eventstore.audit_files import (
    append_rounds,
    archive_prefix,
    copy_database,
    downgrade_to_chain_v1,
    export_lines,
    organization_export,
    rehash,
    rows,
    write_segment,
)
from tests.eventstore.helpers import all_events

MODIFIED = "hash does not match the event's content: the event was modified"
MISSING = "this event is missing here: removed or reordered"
PARALLEL = Plan(workers=2, from_bytes=0, range_bytes=700, context="fork")
"""Two workers, ranges of about two lines: every file here is cut into many ranges (the
threshold forced to nothing)."""


@dataclass(frozen=True)
class Log:
    database: Path
    events: list[AgentEvent]
    signer: HeadSigner

    def kept(self) -> SignedHead:
        """The newest signed head, as an auditor copied it."""
        heads = [e for e in self.events if e.event_type == "chain_head"]
        return SignedHead.from_json(heads[-1].payload)

    def checks(self, kept: bool = True) -> HeadChecks:
        return HeadChecks(PublicKeys([self.signer.public]), [self.kept()] if kept else [])


async def _write(database: Path, signer: HeadSigner, rounds: range) -> list[AgentEvent]:
    async with open_store(str(database), projections=[RunProjection()]) as store:
        await append_rounds(store, signer, rounds)
        await store.append("org-a", "run-0", [NewEvent("custom.after", {"n": 1})])
        return await all_events(store)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Log:
    directory = tmp_path_factory.mktemp("log")
    signer = generate_key_file(directory / "signing.pem")
    database = directory / "log.db"
    return Log(database, asyncio.run(_write(database, signer, range(24))), signer)


@pytest.fixture
def log(written: Log, tmp_path: Path) -> Log:
    copy = tmp_path / "copy.db"
    copy_database(written.database, copy)
    return Log(copy, written.events, written.signer)


def both(
    log: Log,
    files: list[Path],
    *,
    archive: Path | None = None,
    sqlite: bool = False,
    kept: bool = True,
    plan: Plan = PARALLEL,
) -> OfflineReport:
    """The files verified in one process and with workers: the same report; that report."""

    def run(with_plan: Plan) -> OfflineReport:
        sources = open_sources(files, archive, log.database if sqlite else None)
        return verify_sources(sources, log.checks(kept), plan=with_plan)

    serial, parallel = run(SERIAL), run(plan)
    assert asdict(parallel) == asdict(serial)
    assert multiprocessing.active_children() == []  # a walk that stopped ended its workers
    return parallel


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def whole_lines(events: list[AgentEvent]) -> list[str]:
    return export_lines(events).splitlines()


def modified(lines: list[str], index: int) -> list[str]:
    """Line ``index`` with another payload and its old hash."""
    data = json.loads(lines[index])
    data["payload"] = {"forged": index}
    return [*lines[:index], json.dumps(data), *lines[index + 1 :]]


def _index(log: Log, fraction: float) -> int:
    """An ordinary event about ``fraction`` of the way through the log."""
    index = int(len(log.events) * fraction)
    while log.events[index].event_type == "chain_head":
        index += 1
    return index


def test_the_parallel_path_checks_most_lines_in_workers(log: Log, tmp_path: Path) -> None:
    export = write(tmp_path / "export.jsonl", whole_lines(log.events))
    source = ExportFile(export)
    items = list(items_of(source, frozenset(), PARALLEL))
    stretches = [item for item in items if isinstance(item, Stretch)]
    assert len(stretches) > 10
    assert sum(s.count for s in stretches) > len(log.events) // 2
    report = both(log, [export])
    assert report.ok, report
    assert (report.events, report.head_id) == (len(log.events), log.events[-1].id)
    assert report.signed_heads > 10


@pytest.mark.parametrize("context", ["fork", "forkserver", "spawn"])
def test_every_start_method_names_the_same_event(log: Log, tmp_path: Path, context: str) -> None:
    plan = Plan(workers=2, from_bytes=0, range_bytes=700, context=context)
    index = _index(log, 0.6)
    export = write(tmp_path / "export.jsonl", modified(whole_lines(log.events), index))
    report = both(log, [export], plan=plan)
    assert (report.ok, report.first_bad_event_id, report.reason) == (
        False,
        log.events[index].id,
        MODIFIED,
    )


Tamper = Callable[[list[str], Log], tuple[list[str], int]]


def _modified(lines: list[str], log: Log) -> tuple[list[str], int]:
    index = _index(log, 0.3)
    return modified(lines, index), log.events[index].id


def _deleted(lines: list[str], log: Log) -> tuple[list[str], int]:
    index = _index(log, 0.3)
    return [*lines[:index], *lines[index + 1 :]], log.events[index].id


def _reordered(lines: list[str], log: Log) -> tuple[list[str], int]:
    index = _index(log, 0.3)
    swapped = [*lines[:index], lines[index + 1], lines[index], *lines[index + 2 :]]
    return swapped, log.events[index].id


def _second_half(lines: list[str], log: Log) -> tuple[list[str], int]:
    index = _index(log, 0.85)
    return modified(lines, index), log.events[index].id


def _two_ranges(lines: list[str], log: Log) -> tuple[list[str], int]:
    early, late = _index(log, 0.4), _index(log, 0.8)
    return modified(modified(lines, late), early), log.events[early].id


def _not_an_event(lines: list[str], log: Log) -> tuple[list[str], int]:
    index = _index(log, 0.7)
    return [*lines[:index], "{not json", *lines[index:]], log.events[index].id


@pytest.mark.parametrize(
    "tamper",
    [_modified, _deleted, _reordered, _second_half, _two_ranges, _not_an_event],
    ids=["modified", "deleted", "reordered", "second-half", "two-ranges", "not-an-event"],
)
def test_each_tampering_is_named_as_in_one_process(
    log: Log, tmp_path: Path, tamper: Tamper
) -> None:
    lines, bad = tamper(whole_lines(log.events), log)
    report = both(log, [write(tmp_path / "export.jsonl", lines)])
    assert (report.ok, report.first_bad_event_id) == (False, bad), report


def test_a_truncated_tail_is_caught_by_the_kept_head(log: Log, tmp_path: Path) -> None:
    cut = len(log.events) - 6
    export = write(tmp_path / "export.jsonl", whole_lines(log.events[:cut]))
    report = both(log, [export])
    assert (report.ok, report.first_bad_event_id) == (False, log.events[cut - 1].id + 1)
    assert "events at the end of the log were removed" in str(report.reason)
    assert both(log, [export], kept=False).ok


def test_a_rehashed_chain_fails_at_the_first_signed_head_after_the_edit(
    log: Log, tmp_path: Path
) -> None:
    target = log.events[_index(log, 0.5)]
    rehash(log.database, target.id, '{"role":"user","content":"forged"}')
    export = write(tmp_path / "export.jsonl", whole_lines(rows(log.database)))
    report = both(log, [export])
    first_head = next(e for e in log.events if e.event_type == "chain_head" and e.id > target.id)
    assert (report.ok, report.first_bad_event_id) == (False, first_head.id)


def test_an_organizations_export_with_redacted_lines(log: Log, tmp_path: Path) -> None:
    export = tmp_path / "org-a.jsonl"
    lines = organization_export(log.events, export)
    report = both(log, [export])
    assert report.ok, report
    assert report.redacted > 10
    index = next(
        i for i, line in enumerate(lines) if i > len(lines) // 2 and '"redacted": true' in line
    )
    stub = json.loads(lines[index])
    forged = [*lines[:index], json.dumps({**stub, "hash": "f" * 64}), *lines[index + 1 :]]
    report = both(log, [write(export, forged)])
    assert (report.ok, report.first_bad_event_id) == (False, stub["id"])


def test_blank_lines_change_nothing(log: Log, tmp_path: Path) -> None:
    lines = whole_lines(log.events)
    spaced = [line + ("\n" if i % 5 == 0 else "") for i, line in enumerate(lines)]
    assert both(log, [write(tmp_path / "export.jsonl", spaced)]).ok


def test_an_export_nested_in_segments_and_the_live_part(log: Log, tmp_path: Path) -> None:
    events = log.events
    archive = tmp_path / "archive"
    archive.mkdir()
    half = len(events) // 2
    write_segment(archive, events[:10])
    write_segment(archive, events[10:half])
    archive_prefix(log.database, events[half - 1])
    export = write(tmp_path / "export.jsonl", whole_lines(events[5:]))
    report = both(log, [export], archive=archive, sqlite=True)
    assert report.ok, report
    assert report.events == len(events)
    forged = modified(whole_lines(events[5:]), _index(log, 0.8) - 5)
    report = both(log, [write(export, forged)], archive=archive, sqlite=True)
    assert (report.ok, report.first_bad_event_id) == (False, events[_index(log, 0.8)].id)


def test_a_chain_v1_prefix_then_v2(tmp_path: Path) -> None:
    signer = generate_key_file(tmp_path / "signing.pem")
    database = tmp_path / "log.db"
    before = asyncio.run(_write(database, signer, range(8)))
    downgrade_to_chain_v1(database, signer)
    events = asyncio.run(_write(database, signer, range(8, 20)))
    log = Log(database, events, signer)
    export = tmp_path / "org-a.jsonl"
    organization_export(events, export, v2_from=before[-1].id + 1)
    report = both(log, [export])
    assert report.ok, report
    whole = write(tmp_path / "whole.jsonl", whole_lines(events))
    assert both(log, [whole]).ok
    index = len(before) + 3
    report = both(log, [write(whole, modified(whole_lines(events), index))])
    assert (report.ok, report.first_bad_event_id) == (False, events[index].id)


@pytest.mark.parametrize(
    "text",
    ["plain", 'a "quote" and a \\ backslash', "tab\t new\nline \r \b \f \x00 \x1f \x7f",
     "é ü 中文 \u2028 \u2029 \ufeff 😀"],
)  # fmt: skip
def test_the_common_case_hash_is_the_chains_for_any_string(text: str) -> None:
    fields = {
        "id": 7,
        "organization_id": f"org {text}",
        "run_id": f"run {text}",
        "conversation_id": f"conv {text}",
        "sequence": 3,
        "event_type": f"custom.{text}",
        "visibility": "operator",
        "payload_json": canonical_json({"content": text}),
        "created_at": "2026-12-01T10:00:00.123456+00:00",
        "prev_hash": "a" * 64,
    }
    digest = event_hash(**fields)  # type: ignore[arg-type]
    event = AgentEvent(**fields, hash=digest)  # type: ignore[arg-type]
    assert v2_as_written(decode_line(event.to_json().encode("utf-8"))) == digest


def test_a_worker_that_dies_fails_the_walk(log: Log, tmp_path: Path) -> None:
    """Its ranges never come back: the walk must fail, not wait for them forever."""
    lines = whole_lines(log.events) * 40  # many ranges: the workers cannot be done at once
    export = write(tmp_path / "export.jsonl", lines)
    plan = Plan(workers=2, from_bytes=0, range_bytes=300, context="fork")
    items = items_of(ExportFile(export), frozenset(), plan)
    next(items)
    workers = multiprocessing.active_children()
    assert workers
    for worker in workers:  # stopped first, so none finishes a range while the others die
        os.kill(worker.pid or 0, signal.SIGSTOP)
    for worker in workers:
        os.kill(worker.pid or 0, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        for _ in items:
            pass
    assert multiprocessing.active_children() == []
