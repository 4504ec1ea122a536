"""Decoding a request body: JSON that the log can hash, store and send back, or a 4xx.

``json.loads`` accepts what the writer cannot encode (lone surrogates such as ``"\\ud800"``,
``NaN``, ``1e999``) and recurses until it overflows the stack on deep nesting, so each is
refused here, where the body is decoded, naming the limit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

from api.client.contract import MAX_JSON_DEPTH
from api.server.errors import ApiError

__all__ = ["decode_json"]

_fast_decode = msgspec.json.Decoder().decode
"""Reads every body it takes as ``json.loads`` does (integers of any size exactly, floats
correctly rounded, the last of repeated keys); what it refuses (not JSON, ``NaN``, ``1e999``,
a lone surrogate, invalid UTF-8, a byte order mark, deep nesting) takes the reference path,
which decides and words the answer as before (``tests/api/server/test_json_input.py``)."""


def decode_json(raw: bytes) -> Any:
    """The decoded body; 400 when it is not JSON, 422 when it breaks a limit of docs/api.md."""
    try:
        data = _fast_decode(raw)
    except (msgspec.DecodeError, RecursionError):
        data = _reference_decode(raw)
    if _may_break_limits(raw):
        _check_tree(data)
    return data


def _reference_decode(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc


_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
"""A surrogate escape, or one encoded in the bytes (which ``json.loads`` lets through)."""


def _may_break_limits(raw: bytes) -> bool:
    """Whether the walk is needed: most bodies nest too little and hold no surrogate at all,
    which the bytes tell at C speed (every bracket counts, also those inside strings)."""
    brackets = raw.count(b"{") + raw.count(b"[")
    return brackets >= MAX_JSON_DEPTH or _MAYBE_SURROGATE.search(raw) is not None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number (a 64-bit float)")
    return value


def _check_tree(data: Any) -> None:
    """One pass over the body, without recursion: nesting depth and every string and key."""
    if isinstance(data, str):
        _check_text(data)
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        container, level = stack.pop()
        if level > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(container, dict):
            for key in container:
                _check_text(key)
        for item in container.values() if isinstance(container, dict) else container:
            if isinstance(item, str):
                _check_text(item)
            elif isinstance(item, dict | list):
                stack.append((item, level + 1))


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            422,
            "invalid_text",
            f"the body has a lone UTF-16 surrogate ({text[exc.start]!r}): "
            "strings must be valid Unicode (pair \\ud800-\\udbff with \\udc00-\\udfff)",
        ) from None


def _too_deep() -> ApiError:
    return ApiError(
        422,
        "json_too_deep",
        f"the body nests objects and arrays deeper than {MAX_JSON_DEPTH} levels (the limit)",
        limit=MAX_JSON_DEPTH,
    )
