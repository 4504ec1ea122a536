"""The head meter's arithmetic: where exactly a request head stops being acceptable."""

from __future__ import annotations

import pytest

from api.server.transport.limits import FIELD_OVERHEAD, HeadMeter, HeadRefused


def test_a_head_of_exactly_the_limit_passes_and_one_byte_more_is_431() -> None:
    meter = HeadMeter(max_bytes=100, max_fields=10)
    meter.add_url(b"/" * 40)
    meter.add_field(b"x", b"v" * (60 - 1 - FIELD_OVERHEAD))  # 100 bytes in all
    with pytest.raises(HeadRefused) as refused:
        meter.add_field(b"y", b"")
    assert refused.value.status == 431


def test_a_url_alone_over_the_limit_is_414() -> None:
    meter = HeadMeter(max_bytes=100, max_fields=10)
    meter.add_url(b"/" * 60)
    with pytest.raises(HeadRefused) as refused:
        meter.add_url(b"a" * 41)  # fragments add up
    assert refused.value.status == 414


def test_fields_past_the_count_are_431_and_a_new_request_starts_afresh() -> None:
    meter = HeadMeter(max_bytes=10_000, max_fields=2)
    meter.add_field(b"a", b"1")
    meter.add_field(b"b", b"2")
    with pytest.raises(HeadRefused, match="at most 2 header fields"):
        meter.add_field(b"c", b"3")
    meter.reset()
    meter.add_field(b"a", b"1")


def test_bytes_not_parsed_yet_count_against_the_limit() -> None:
    meter = HeadMeter(max_bytes=100, max_fields=10)
    meter.add_received(100)
    with pytest.raises(HeadRefused, match="at most 100 bytes"):
        meter.add_received(1)
