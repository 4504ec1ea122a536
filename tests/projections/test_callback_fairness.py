"""Due callback deliveries come interleaved by organization: a backlog cannot crowd others out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from projections.callbacks import CallbackPolicy, due_deliveries

from .conftest import Runs

pytestmark = pytest.mark.anyio
URL = "https://receiver.example/hook"


async def ended_runs(runs: Runs, organization: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        run = await runs.commands.create(organization, "a", callback_url=URL)
        await runs.commands.cancel(organization, run.run_id)  # queued: cancelled at once
        ids.append(run.run_id)
    return ids


async def test_every_organization_is_in_the_first_deliveries(runs: Runs) -> None:
    backlog = await ended_runs(runs, "org-a", 6)
    [other] = await ended_runs(runs, "org-b", 1)
    now = datetime.now(UTC)
    due = await due_deliveries(runs.store, CallbackPolicy(), now, per_organization=4, limit=2)
    assert [d.run.run_id for d in due] == [backlog[0], other]
    window = await due_deliveries(runs.store, CallbackPolicy(), now, per_organization=4)
    assert [d.run.run_id for d in window] == [backlog[0], other, *backlog[1:4]]
