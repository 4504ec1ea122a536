"""What a reader capped at a visibility level may see of a run's content.

A run's *content* (journal, status detail and error, checkpoint, tool names, child run ids,
callback error)
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
)
_LISTS = ("tools_used", "child_run_ids")


def empty_views() -> Views:
    empty: dict[str, Any] = dict.fromkeys(CONTENT_FIELDS) | {name: [] for name in _LISTS}
    return {level.label: dict(empty) for level in CAPPED_LEVELS}


def reveal(views: Views, event: AgentEvent, values: dict[str, Any], *, hide: bool) -> Views:
    """The views after ``event`` set ``values``: a level that may see the event takes them; a
    level below it keeps what it saw before, or (``hide``) sees None where the values are only
    meaningful as the newest event's (a status detail, a callback error)."""
    level = event.visibility_level
    below = dict.fromkeys(values) if hide else {}
    return {
        cap.label: views[cap.label] | (values if level <= cap else below) for cap in CAPPED_LEVELS
    }


def add_item(views: Views, event: AgentEvent, field: str, item: str) -> Views:
    """``item`` (a tool name, a child run id) joins ``field`` of the levels that may see
    ``event``."""
    level = event.visibility_level
    changed = dict(views)
    for cap in CAPPED_LEVELS:
        items = views[cap.label].get(field, [])
        if level <= cap and item not in items:
            changed[cap.label] = views[cap.label] | {field: [*items, item]}
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
