"""``decode_json`` reads a body with msgspec where it can: every body decodes, or is refused
with the same answer, as through the reference path (``json.loads`` and the limit checks)."""

from __future__ import annotations

import math
import random
import struct

import pytest

from api.server.errors import ApiError
from api.server.json_input import _check_tree, _reference_decode, decode_json

BODIES = [
    b'{"a": 1, "a": 2}',
    b'{"n": -0, "f": -0.0, "e": 1E5, "tiny": 1e-400, "sub": 4.9e-324}',
    b'{"big": 123456789012345678901234567890, "neg": -98765432109876543210987654321}',
    b'{"max": 1.7976931348623157e308, "odd": 9007199254740993, "f": 9007199254740993.0}',
    b'{"s": "\\ud83d\\ude00 \\u00e9 \xc3\xa9 a\\/b \\u0000", "": 1}',
    b' \r\n\t{"ws": [1, 2, 3]}\n',
    b'{"s": "\\ud800"}',
    b'{"s": "\xed\xa0\x80"}',
    b'\xef\xbb\xbf{"bom": 1}',
    b'{"x": NaN}',
    b'{"x": Infinity}',
    b'{"x": -Infinity}',
    b'{"x": 1e999}',
    b'{"x": 1.7976931348623159e308}',
    b'{"x": "\x01"}',
    b'{"x": 01}',
    b'{"x": 1.}',
    b'{"x": .5}',
    b'{"x": [1,]}',
    b'{"x": 1,}',
    b'{"x": "\xff"}',
    b'{"x": ' + b"[" * 70 + b"]" * 70 + b"}",
    b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b"{not json",
    b"",
]


def _outcome(decode: object, raw: bytes) -> tuple[str, object]:
    try:
        value = decode(raw)  # type: ignore[operator]
    except ApiError as exc:
        return "refused", (exc.status, exc.code, exc.message)
    return "decoded", repr(value)


def _reference(raw: bytes) -> tuple[str, object]:
    def both(body: bytes) -> object:
        data = _reference_decode(body)
        _check_tree(data)  # the limits' walk, also where the fast path skips it
        return data

    return _outcome(both, raw)


@pytest.mark.parametrize("raw", BODIES)
def test_each_body_is_decoded_or_refused_as_by_the_reference(raw: bytes) -> None:
    assert _outcome(decode_json, raw) == _reference(raw)


def test_floats_read_as_json_loads_reads_them() -> None:
    draw = random.Random(16)
    for _ in range(20_000):
        value = struct.unpack("<d", struct.pack("<Q", draw.getrandbits(64)))[0]
        if not math.isfinite(value):
            continue
        for text in (repr(value), f"{value:.17g}", f"{value:.5e}", f"{value:.3f}"):
            raw = f'{{"f": {text}}}'.encode()
            assert _outcome(decode_json, raw) == _reference(raw), text
