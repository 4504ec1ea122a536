"""``ask_human`` across a worker restart, answered through the CLI."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from api.client import RuntrackClient
from tests.e2e.conftest import ServerProcess, run_cli

from .conftest import WorkerFactory, first_event, lines, run_events

pytestmark = pytest.mark.anyio


async def test_a_question_survives_a_worker_restart_and_is_answered_from_the_cli(
    server: ServerProcess, client: RuntrackClient, workers: WorkerFactory, tmp_path: Path
) -> None:
    run = await client.create_run("agent")
    first = await workers("ask")
    asked = await first_event(client, run.id, lambda e: e.event_type == "human_input_requested")
    assert asked.payload["question_id"] == "q-1"
    await first_event(
        client,
        run.id,
        lambda e: e.event_type == "run_status_changed" and e.payload["to"] == "waiting_on_human",
    )
    first.send_signal(signal.SIGTERM)
    assert await first.wait() == 0
    (first_id,) = lines(tmp_path, "exits")
    assert (await client.get_run(run.id)).status == "waiting_on_human"  # nothing given up
    second = await workers("ask")
    code, _, err = await run_cli(server, "answer", run.id, "yes")
    assert code == 0, err
    done = await client.wait(run.id)
    assert done.status == "completed"
    (report,) = lines(tmp_path, "reports")
    assert report.startswith("answer yes on ")
    assert first_id not in report  # the second worker got the answer
    assert lines(tmp_path, "calls") == [f"prepare release on {first_id}"]  # replayed after
    events = await run_events(client, run.id)
    assert [e.event_type for e in events].count("human_input_requested") == 1
    assert [e.payload["response"] for e in events if e.event_type == "human_input"] == ["yes"]
    second.send_signal(signal.SIGTERM)
    assert await second.wait() == 0
