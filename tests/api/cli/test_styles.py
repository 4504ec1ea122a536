"""One status → style mapping for every verb (issue 18): each status has one, and the verbs that
print a status take it from there."""

from __future__ import annotations

import inspect

from api.cli import client_verbs, styles, track_view
from api.client.contract import STATUSES


def test_every_status_has_a_style_and_the_ends_differ() -> None:
    assert set(styles.STATUS_STYLES) == set(STATUSES)
    ends = ["completed", "failed", "cancelled"]
    assert len({styles.STATUS_STYLES[status] for status in ends}) == len(ends)


def test_the_markup_and_the_cell_use_the_mapping() -> None:
    assert styles.styled_status("failed") == "[bold red]failed[/]"
    assert styles.status_text("completed").style == "green"
    assert styles.styled_status("[x]") == "\\[x]"  # an unknown status is escaped, unstyled


def test_the_verbs_keep_no_mapping_of_their_own() -> None:
    for module in (client_verbs, track_view):
        source = inspect.getsource(module)
        assert '"green"' not in source
        assert '"red"' not in source
