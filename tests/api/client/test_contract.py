"""The client's wire constants equal what the store and the lifecycle hold: the client cannot
import those, so the two definitions are held equal here."""

from __future__ import annotations

import re
from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.client import contract
from eventstore import InvalidEvent, Visibility
from eventstore import appending as store_appending
from eventstore import payloads as store_payloads
from projections import lifecycle


def test_statuses_are_the_lifecycles() -> None:
    assert tuple(status.value for status in lifecycle.RunStatus) == contract.STATUSES
    assert {status.value for status in lifecycle.TERMINAL} == contract.TERMINAL_STATUSES


def test_visibilities_are_the_stores_from_narrowest() -> None:
    assert tuple(level.label for level in sorted(Visibility)) == contract.VISIBILITIES


def test_event_types_are_the_stores() -> None:
    assert contract.SERVER_WRITTEN_TYPES == store_payloads.SERVER_WRITTEN_TYPES
    appendable = [t.value for t in store_payloads.EventType]
    appendable = [t for t in appendable if t not in store_payloads.SERVER_WRITTEN_TYPES]
    assert list(contract.APPENDABLE_TYPES) == appendable


@pytest.mark.parametrize(
    "event_type",
    ["custom.x", "custom.a.b-c", "custom.", "custom", "custom.\x00", "custom.a\x7f", "x.custom.a"],
)
def test_the_custom_type_pattern_takes_what_the_store_takes(event_type: str) -> None:
    matches = re.fullmatch(contract.CUSTOM_TYPE_PATTERN, event_type) is not None
    try:
        store_payloads.normalise_payload(event_type, {})
    except InvalidEvent:
        accepted = False
    else:
        accepted = True
    assert matches == accepted


@pytest.mark.parametrize("text", ["agent-1", "a b", "", "\x00", "a\x1fb", "\x7f", "\x9f", "é"])
def test_the_identifier_pattern_refuses_what_the_store_refuses(text: str) -> None:
    matches = re.fullmatch(contract.IDENTIFIER_PATTERN, text) is not None
    assert matches == (store_appending.CONTROL_CHARACTER.search(text) is None)


def test_limits_fit_inside_the_stores() -> None:
    assert contract.MAX_INTEGER == store_payloads.MAX_INTEGER
    assert contract.MAX_ID_CHARS <= store_appending.MAX_ID_LENGTH
    assert contract.MAX_EVENTS_PER_APPEND <= store_appending.MAX_EVENTS_PER_APPEND


class _Client(BaseModel):
    model_config = ConfigDict(strict=True)
    value: Annotated[int, Field(ge=0), contract.INTEGRAL]


class _Store(BaseModel):
    model_config = ConfigDict(strict=True)
    value: Annotated[int, Field(ge=0), store_payloads.INTEGRAL]


@pytest.mark.parametrize("value", [3, 3.0, 3.5, "3", True, -1.0, None])
def test_integral_reads_numbers_as_the_stores_does(value: object) -> None:
    def outcome(model: type[BaseModel]) -> object:
        try:
            return model.model_validate({"value": value}).model_dump()
        except ValidationError as exc:
            return [error["type"] for error in exc.errors()]

    assert outcome(_Client) == outcome(_Store)
