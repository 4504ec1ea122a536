"""What a head binds back along a chain with redacted lines (``eventstore/offline_proof.py``)."""

from __future__ import annotations

from eventstore.offline_proof import MAX_RANGES, Coverage


def walk(lines: str, heads: dict[int, int]) -> Coverage:
    """``lines``: ``w`` a whole event, ``r`` a redacted one, ids from 1; ``heads``: at which id
    a head naming which id is seen."""
    coverage = Coverage()
    coverage.start(1)
    for event_id, kind in enumerate(lines, 1):
        if kind == "r":
            coverage.redacted(event_id)
        if event_id in heads:
            coverage.bound(heads[event_id])
    coverage.finish(len(lines))
    return coverage


def test_a_head_binds_back_to_the_last_redacted_line_only() -> None:
    found = walk("wwrwwwrww", {5: 5})
    assert (found.unproven, found.ranges) == (5, [(1, 2), (6, 9)])


def test_a_head_on_a_redacted_line_binds_nothing_before_it() -> None:
    found = walk("wwwrw", {5: 4})  # a chain_head at 5 signing the redacted event 4
    assert (found.unproven, found.ranges) == (4, [(1, 5)])


def test_stretches_with_no_proof_between_them_are_one_range() -> None:
    found = walk("wrwrwwrw", {6: 6})
    assert found.ranges == [(1, 3), (8, 8)]
    assert found.unproven == 3


def test_a_report_lists_a_bounded_number_of_stretches() -> None:
    lines = "wwr" * (MAX_RANGES + 5)
    heads = {3 * n + 1: 3 * n + 1 for n in range(MAX_RANGES + 5)}  # the first of each pair
    found = walk(lines, heads)
    assert found.unproven == MAX_RANGES + 5
    assert len(found.ranges) == MAX_RANGES
    assert found.truncated
