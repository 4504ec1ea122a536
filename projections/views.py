"""What a reader capped at a visibility level may see of a run's content.

A run's *content* (journal, status detail and error, checkpoint, tool names, child run ids,
callback error, the open question to a person)
comes from events of some visibility; a key sees it only if it could receive that event on a
stream. The fold keeps, beside the full values, one view per capped level (``user``,
``operator``) holding the values of the newest events that level may see, so a read answers a
capped key from the read model alone and a rebuild folds the same views from the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventstore import AgentEvent, Visibility

if TYPE_CHECKING:
    from .state import RunState

__all__ = [
    "CAPPED_LEVELS",
    "CONTENT_FIELDS",
    "Views",
    "add_item",
    "empty_views",
    "reveal",
    "seen_at",
]

Views = dict[str, dict[str, Any]]

CAPPED_LEVELS = (Visibility.USER, Visibility.OPERATOR)
CONTENT_FIELDS = (
    "journal",
    "detail",
    "error",
    "checkpoint_id",
    "checkpoint_kind",
    "tools_used",
    "child_run_ids",
    "callback_error",
    "question",
)
_LISTS = ("tools_used", "child_run_ids")


_EMPTY: dict[str, Any] = dict.fromkeys(CONTENT_FIELDS)
_CAPS = tuple((cap.label, cap) for cap in CAPPED_LEVELS)
assert [label for label, _ in _CAPS] == ["user", "operator"]  # reveal writes both by name
_SEES: dict[str, tuple[bool, ...]] = {
    level.label: tuple(level <= cap for cap in CAPPED_LEVELS) for level in Visibility
}
"""For each stored visibility label, whether each capped level may see such an event: the
fold asks for every content event, and enum lookups and comparisons cost more than this."""


def empty_views() -> Views:
    # every run starts with these (a rebuild builds one per run): fresh lists for each level
    return {label: {**_EMPTY, "tools_used": [], "child_run_ids": []} for label, _ in _CAPS}


def reveal(views: Views, event: AgentEvent, values: dict[str, Any], *, hide: bool) -> Views:
    """The views after ``event`` set ``values``: a level that may see the event takes them; a
    level below it keeps what it saw before, or (``hide``) sees None where the values are only
    meaningful as the newest event's (a status detail, a callback error)."""
    user_sees, operator_sees = _SEES[event.visibility]
    below = dict.fromkeys(values) if hide else {}
    return {
        "user": views["user"] | (values if user_sees else below),
        "operator": views["operator"] | (values if operator_sees else below),
    }


def add_item(views: Views, event: AgentEvent, field: str, item: str) -> Views:
    """``item`` (a tool name, a child run id) joins ``field`` of the levels that may see
    ``event``."""
    changed = dict(views)
    for (label, _), sees in zip(_CAPS, _SEES[event.visibility], strict=True):
        items = views[label].get(field, [])
        if sees and item not in items:
            changed[label] = views[label] | {field: [*items, item]}
    return changed


def seen_at(state: RunState, visibility: Visibility) -> RunState:
    """The run as a reader capped at ``visibility`` sees it: its content fields from that
    level's view, everything else (the summary) as it is. A row without that view (written
    by hand) shows no content rather than all of it."""
    if visibility >= Visibility.INTERNAL:
        return state
    view = empty_views()[visibility.label] | state.content_views.get(visibility.label, {})
    capped = state.copy()
    capped.__dict__.update(view)
    for name in _LISTS:
        setattr(capped, name, tuple(view[name]))
    return capped
