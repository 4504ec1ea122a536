"""Audit: verify the chain, publish the latest signed head, export the log for an auditor.

What each answer may carry follows docs/security.md ("What the hash chain proves", "Signed chain
heads"): the chain is global, so a verify walks every event but counts only the caller's; an
export holds the caller's events whole and every other event as its id and hashes only.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.client.models import AuditReport, ChainHeadAnswer
from api.server.auth import Principal, Role, require
from api.server.errors import ApiError
from api.server.query import AFTER_EVENT_ID, EXPORT_LIMIT, KEPT_HEAD, PUBLIC_KEY, RUN_ID
from api.server.routes._common import compact_json, json_response, store
from api.server.sse import resolve_visibility
from eventstore import (
    EVENT_COLUMNS,
    SYSTEM_ORGANIZATION,
    SYSTEM_RUN,
    AgentEvent,
    EventFilter,
    EventType,
    HeadChecks,
    PublicKeys,
    SignedHead,
    Visibility,
    event_content_hash,
    load_public_key,
)

__all__ = ["audit_export", "audit_head", "audit_verify"]

_KEPT = re.compile(r"([1-9][0-9]{0,17}):([0-9a-f]{64})")


async def audit_verify(request: Request) -> JSONResponse:
    """The chain's integrity as the caller's organization may know it: every event is checked,
    only the organization's own are counted, and a break elsewhere is named by its global id
    and kind, never by its organization, run or content. Signed heads are checked with the
    server's trusted keys, or with ``public_key`` (repeatable); ``head=ID:HASH`` is a head the
    caller kept."""
    principal = await require(request, Role.ADMIN)
    heads = _head_checks(request)
    report = await store(request).verify(
        run_id=RUN_ID.get(request), organization_id=principal.organization_id, heads=heads
    )
    answer = AuditReport(
        ok=report.ok, events=report.events, head_id=report.head_id, head_hash=report.head_hash
    )
    if not report.ok:  # the break is named only when there is one
        answer.first_bad_event_id, answer.reason = report.first_bad_event_id, report.reason
    if heads.keys or heads.kept:
        answer.signed_heads, answer.signed_through = report.signed_heads, report.signed_through
    if heads.kept:
        answer.kept_heads = report.kept_heads
    return json_response(answer.model_dump(mode="json", exclude_unset=True))


def _head_checks(request: Request) -> HeadChecks:
    """The caller's ``public_key`` values replace the server's trusted keys (its own and its
    ``--trusted-public-key`` ones), so an auditor checks with the keys it holds."""
    given = PUBLIC_KEY.get(request)
    trusted: PublicKeys = request.app.state.trusted_keys
    try:
        keys = PublicKeys([load_public_key(value) for value in given]) if given else trusted
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"public_key: {exc}") from None
    kept = KEPT_HEAD.get(request)
    if kept is None:
        return HeadChecks(keys)
    match = _KEPT.fullmatch(kept)
    if match is None:
        raise ApiError(
            400, "invalid_parameter", "head must be EVENT_ID:HASH (the hash in 64 hex digits)"
        )
    head = SignedHead(int(match[1]), match[2], signature="", key_id="")
    return HeadChecks(keys, kept=[head])


async def audit_head(request: Request) -> JSONResponse:
    """The latest signed head, for any key: it names a global event id (which ids already
    reveal, docs/security.md) and a hash, nothing of any organization's content."""
    await require(request, Role.USER)
    rows = await store(request).fetchall(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ? AND organization_id = ? "
        "AND event_type = ? ORDER BY sequence DESC LIMIT 1",
        (SYSTEM_RUN, SYSTEM_ORGANIZATION, EventType.CHAIN_HEAD.value),
    )
    if not rows:
        raise ApiError(
            404,
            "no_signed_head",
            "no chain head was signed yet: the server signs them with --signing-key",
        )
    event = AgentEvent.from_row(rows[0])
    answer = ChainHeadAnswer(event_id=event.id, created_at=event.created_at, **event.payload)
    return json_response(answer.model_dump(mode="json"))


async def audit_export(request: Request) -> Response:
    """A page of the whole log in id order: the caller's events up to ``visibility`` whole (and
    the server's signed heads, which hold no one's content), every other event redacted to its
    id and hashes, so that the export still verifies as one chain."""
    principal = await require(request, Role.ADMIN)
    visibility = resolve_visibility(request, principal)
    after, limit = AFTER_EVENT_ID.value(request), EXPORT_LIMIT.value(request)
    page = await store(request).read(EventFilter(), after=after, limit=limit)
    await store(request).check_cursor(after)  # after the read, as every cursor route
    head = await store(request).head()
    v2_from = await store(request).chain_v2_from()
    lines = ",".join(_line(event, principal, visibility, v2_from) for event in page.events)
    cursor = str(page.position) if page.position < head else None
    rest = {"next_cursor": cursor, "position": page.position, "head": head}
    body = f'{{"items":[{lines}],{compact_json(rest)[1:]}'
    return Response(body.encode("utf-8"), media_type="application/json")


def _line(event: AgentEvent, principal: Principal, visibility: Visibility, v2_from: int) -> str:
    shown = (
        event.organization_id == principal.organization_id and event.visibility_level <= visibility
    ) or (event.organization_id == SYSTEM_ORGANIZATION and event.event_type == _CHAIN_HEAD)
    if shown:
        return event.to_json()
    if event.id < v2_from:  # chain v1: the link cannot be shown without the content
        return (
            f'{{"id":{event.id},"prev_hash":"{event.prev_hash}","hash":"{event.hash}",'
            '"redacted":true}'
        )
    return (
        f'{{"id":{event.id},"prev_hash":"{event.prev_hash}","hash":"{event.hash}",'
        f'"content_hash":"{event_content_hash(event)}","redacted":true}}'
    )


_CHAIN_HEAD = EventType.CHAIN_HEAD.value
