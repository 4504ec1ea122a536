"""Canonical JSON stays byte-identical to the encoder every existing hash was made with.

``canonical_json`` writes with orjson where orjson writes the same text, and with ``json``
where it would not; a single byte of difference and an existing log stops verifying.
"""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import MAX_INTEGER, AgentEvent, canonical_json
from eventstore.chain import _FAST
from eventstore.payloads import normal_json, normalise_payload
from eventstore.records import decode_json, refilled_events


def reference(value: Any) -> str:
    """The canonical form as it was defined before the fast path: the test's own copy."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


EDGE_FLOATS: list[float] = [
    1e16,
    1.5e16,
    1e15,
    9007199254740993.0,
    1e22,
    1e100,
    1.7976931348623157e308,
    1e-4,
    9.999999999999999e-5,
    1e-5,
    1.5e-5,
    1e-7,
    1e-9,
    1.5e-9,
    1e-10,
    1.23e-18,
    5e-324,
    2.2250738585072014e-308,
    -0.0,
    0.0,
    0.1,
    12.5,
    -1e-7,
]
EDGE_INTEGERS: list[int] = [
    0,
    -1,
    MAX_INTEGER,
    MAX_INTEGER + 1,
    -MAX_INTEGER - 1,
    -MAX_INTEGER - 2,
    2**64 - 1,
    2**64,
    -(2**64),
    2**200,
]
_NO_SURROGATES = st.characters(exclude_categories=["Cs"])
EDGE_TEXT = ["", "é", "\u2028\u2029", "\x00\x1f\x7f\x9f", '"\\/', "\ufeff\uffff", "😀\U0010ffff"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(EDGE_INTEGERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-11, max_value=1e-3),
    st.sampled_from(EDGE_FLOATS),
    st.text(alphabet=_NO_SURROGATES),
    st.sampled_from(EDGE_TEXT),
)
keys = st.one_of(st.text(alphabet=_NO_SURROGATES), st.sampled_from(EDGE_TEXT))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)
"""Every JSON value the API accepts (surrogate-free text: a lone surrogate is not UTF-8),
and integers past the API's ``MAX_INTEGER`` and past 64 bits, which the store still takes."""


def test_the_fast_path_is_in_use() -> None:
    """The installed orjson passed the check at import; else every value takes ``json``."""
    assert _FAST


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_canonical_json_is_the_reference_form(value: Any) -> None:
    assert canonical_json(value) == reference(value)
    assert canonical_json({"payload": value, "list": [value]}) == reference(
        {"payload": value, "list": [value]}
    )


@pytest.mark.parametrize("number", [*EDGE_FLOATS, *EDGE_INTEGERS])
def test_edge_numbers_are_written_as_before(number: float) -> None:
    assert canonical_json(number) == reference(number)
    assert canonical_json({"v": [number, -number]}) == reference({"v": [number, -number]})


def test_keys_sort_by_code_point_across_planes() -> None:
    value = {"\U0001f600": 1, "\uffff": 2, "\ue000": 3, "z": 4, "Z": 5, "": 6, "é": 7}
    assert canonical_json(value) == reference(value)


class Colour(enum.Enum):
    RED = "red"


class Level(enum.StrEnum):
    HIGH = "high"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), [1.0, {"x": float("nan")}]],
)
def test_non_finite_floats_are_still_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="Out of range float values"):
        canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [
        {"when": datetime.datetime(2026, 1, 1)},
        {"id": uuid.UUID(int=1)},
        {"colour": Colour.RED},
        {"set": {1}},
        {"bytes": b"x"},
    ],
)
def test_values_json_cannot_hold_are_still_refused(value: Any) -> None:
    """orjson writes datetimes, UUIDs and enums; the canonical form never did."""
    with pytest.raises(TypeError):
        canonical_json(value)


def test_subclasses_and_odd_keys_are_written_as_json_writes_them() -> None:
    value = {"level": Level.HIGH, "t": (1, 2), "deep": [[[[1]]]] * 2}
    assert canonical_json(value) == reference(value)
    assert canonical_json({2: "b", 1: "a"}) == reference({2: "b", 1: "a"})
    deep: Any = 1
    for _ in range(400):  # deeper than orjson writes
        deep = [deep]
    assert canonical_json(deep) == reference(deep)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_decode_json_reads_canonical_text_as_json_loads_does(value: Any) -> None:
    text = canonical_json(value)
    # written again by the reference: ints stay ints, floats keep their bits, -0.0 its sign
    assert reference(decode_json(text)) == reference(json.loads(text))
    assert reference(decode_json(text.encode())) == text


@pytest.mark.parametrize(
    "text", ["NaN", "[Infinity, -Infinity]", "1e400", '"\\ud800"', '{"a": 1, "a": 2}']
)
def test_decode_json_takes_what_json_loads_takes(text: str) -> None:
    assert repr(decode_json(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["", "01", "[1,]", '"a\x01"', "{'a': 1}", "1 2"])
def test_decode_json_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        decode_json(text)


def test_refilled_events_give_each_row_its_own_values_and_payload() -> None:
    """The rebuild's reader: one object refilled per row, whose payload is that row's."""
    rows = [
        (n, "org", f"run-{n}", "conv", n, "step_completed", "user", f'{{"n":{n}}}', "t", "", "")
        for n in (1, 2, 3)
    ]
    seen = [(id(event), event.id, event.run_id, event.payload) for event in refilled_events(rows)]
    assert [values[1:] for values in seen] == [(n, f"run-{n}", {"n": n}) for n in (1, 2, 3)]
    assert len({values[0] for values in seen}) == 1


def test_a_refilled_event_holds_every_column_of_its_row_as_from_row_does() -> None:
    """The refill names each column itself: each one lands in its own field, and a row of
    another length is refused rather than shifting the columns."""
    row = (7, "org", "run", "conv", 3, "step_completed", "operator", '{"n":1}', "t", "p", "h")
    (refilled,) = refilled_events([row])
    assert refilled.__dict__ == {**AgentEvent.from_row(row).__dict__, "_payload": None}
    with pytest.raises(ValueError, match="not enough values"):
        list(refilled_events([row[:-1]]))


_MESSAGE_ROLES = ["user", "assistant", "system", "tool"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_MESSAGE_ROLES), st.one_of(st.text(), st.sampled_from(EDGE_TEXT)))
def test_a_plain_message_skips_the_model_with_the_same_text(role: str, content: str) -> None:
    """``normal_json`` is the model's normal form in canonical JSON, lone surrogates too."""
    payload = {"content": content, "role": role}
    expected = canonical_json(normalise_payload("message_created", payload))
    assert normal_json("message_created", payload) == expected == reference(payload)


class _Text(str):
    """A str subclass: the model turns it into a plain str, so it takes the model's path."""


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("message_created", {"role": "robot", "content": "x"}),
        ("message_created", {"role": "user", "content": 1}),
        ("message_created", {"role": "user"}),
        ("message_created", {"role": "user", "content": "x", "extra": "y"}),
        ("message_created", {"role": "user", "contents": "x"}),
        ("message_created", {"role": _Text("user"), "content": "x"}),
        ("message_created", {"role": "user", "content": _Text("x")}),
        ("message_created", [("role", "user"), ("content", "x")]),
        ("custom.message_created", {"role": "user", "content": "x"}),
        ("journal_updated", {"role": "user", "content": "x"}),
    ],
)
def test_anything_else_goes_to_the_model(event_type: str, payload: Any) -> None:
    assert normal_json(event_type, payload) is None
