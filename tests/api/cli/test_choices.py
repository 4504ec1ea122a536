"""The CLI's closed choices stay those of the wire contract."""

from __future__ import annotations

from typing import get_args

from api.cli.client_verbs import OPEN_STATUSES, VisibilityName
from api.client.contract import STATUSES, TERMINAL_STATUSES, VISIBILITIES


def test_visibility_choices_are_the_contract_s() -> None:
    assert get_args(VisibilityName) == VISIBILITIES


def test_open_statuses_are_every_status_but_the_terminal_ones() -> None:
    assert set(OPEN_STATUSES) | TERMINAL_STATUSES == set(STATUSES)
    assert {"queued", "waiting_on_lane", "waiting_on_human"} <= set(OPEN_STATUSES)
