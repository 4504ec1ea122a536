"""The claim wait's parts: which events wake a claim, and the gate that spares empty attempts."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.server.claim_wait import ClaimGate, wakes_a_claim
from eventstore import AgentEvent

pytestmark = pytest.mark.anyio


def event(event_type: str, payload: dict[str, object]) -> AgentEvent:
    return AgentEvent(
        1, "org", "run-1", "conv", 1, event_type, "user", json.dumps(payload),
        "2026-01-01T00:00:00.000000+00:00", "0" * 64, "0" * 64,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("event_type", "payload", "wakes"),
    [
        ("run_created", {"agent_id": "a"}, True),
        ("run_status_changed", {"from": "waiting_on_human", "to": "queued"}, True),
        ("run_status_changed", {"from": "failed", "to": "waiting_on_lane"}, True),
        ("run_status_changed", {"from": "failed", "to": "resuming"}, True),
        ("run_status_changed", {"from": "running", "to": "completed"}, True),  # a lane frees
        ("run_status_changed", {"from": "running", "to": "waiting_on_human"}, True),
        ("run_status_changed", {"from": "running", "to": "waiting_on_tool"}, False),
        ("run_status_changed", {"from": "queued", "to": "running"}, False),
        ("run_status_changed", {"from": "waiting_on_human", "to": "cancelled"}, False),
        ("message_created", {"role": "user", "content": "x"}, False),
    ],
)
def test_what_wakes_a_waiting_claim(
    event_type: str, payload: dict[str, object], wakes: bool
) -> None:
    assert wakes_a_claim(event(event_type, payload)) is wakes


async def test_claims_woken_together_make_one_empty_attempt() -> None:
    gate, calls = ClaimGate(), []

    async def nothing() -> str | None:
        calls.append(1)
        await asyncio.sleep(0)  # a claim awaits the writer: the others queue meanwhile
        return None

    key = ("org", None, None)
    found = await asyncio.gather(*(gate.attempt(key, 10, nothing) for _ in range(20)))
    assert found == [None] * 20
    assert len(calls) == 1
    assert await gate.attempt(key, 11, nothing) is None  # newer events: a new attempt
    assert len(calls) == 2


async def test_a_successful_attempt_lets_the_next_one_try() -> None:
    gate, runs = ClaimGate(), ["run-1", "run-2"]

    async def take() -> str | None:
        await asyncio.sleep(0)
        return runs.pop(0) if runs else None

    key = ("org", "agent", None)
    found = await asyncio.gather(*(gate.attempt(key, 5, take) for _ in range(6)))
    assert sorted(f for f in found if f is not None) == ["run-1", "run-2"]
    other = await gate.attempt(("org", "other-agent", None), 5, take)  # another filter tries
    assert other is None
