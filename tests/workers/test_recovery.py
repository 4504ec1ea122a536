"""Workers as real processes against a real server: killed, cancelled, drained, raced."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from api.client import RuntrackClient

from .conftest import WorkerFactory, first_event, hanging, lines, run_events

pytestmark = pytest.mark.anyio


def statuses(events: list) -> list[str]:  # type: ignore[type-arg]
    return [e.payload["to"] for e in events if e.event_type == "run_status_changed"]


@pytest.mark.parametrize("scenario", ["tools", "sync_tools"])
async def test_a_killed_worker_s_run_times_out_and_resumes_on_another(
    client: RuntrackClient, workers: WorkerFactory, tmp_path: Path, scenario: str
) -> None:
    run = await client.create_run("agent", message="go")
    first = await workers(scenario, hang=True)
    await hanging(first)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    timed_out = await client.wait(run.id)
    assert timed_out.status == "timed_out"
    assert timed_out.resume_available
    await client.resume(run.id)
    await workers(scenario)
    done = await client.wait(run.id)
    assert done.status == "completed", done
    assert done.stop_reason == "end_turn"
    # the finished tool was replayed, not called again; the unfinished one was reported
    assert lines(tmp_path, "calls") == ["fetch https://example.org", "slow", "slow"]
    assert lines(tmp_path, "reports") == ["unfinished slow-1"]
    messages = await client.messages(run.id)
    assert messages[-1].content == "hello / slow done"
    events = await run_events(client, run.id)
    finished = [e.payload["tool_call_id"] for e in events if e.event_type == "tool_finished"]
    assert finished == ["fetch-1", "slow-1"]  # the retry finished the interrupted call
    assert statuses(events) == [
        "running", "waiting_on_tool", "running", "waiting_on_tool", "timed_out",
        "resuming", "running", "waiting_on_tool", "running", "completed",
    ]  # fmt: skip


@pytest.mark.parametrize("scenario", ["cancel", "cancel_caught"])
async def test_a_cancel_during_a_long_step_ends_the_run_at_the_next_sdk_call(
    client: RuntrackClient, workers: WorkerFactory, tmp_path: Path, scenario: str
) -> None:
    run = await client.create_run("agent")
    await workers(scenario)
    await first_event(client, run.id, lambda e: e.event_type == "message_created")
    await client.cancel(run.id, reason="enough")
    (tmp_path / "go").touch()
    done = await client.wait(run.id)
    assert done.status == "cancelled"
    assert done.stop_reason == "cancelled"
    expected = ["cancelled", "cancelled again"] if scenario == "cancel_caught" else ["cancelled"]
    assert lines(tmp_path, "reports") == expected


async def test_two_workers_never_run_the_same_run(
    client: RuntrackClient, workers: WorkerFactory, tmp_path: Path
) -> None:
    runs = [await client.create_run("agent", conversation_id=f"c-{n}") for n in range(30)]
    await asyncio.gather(*(workers("exclusive", "--concurrency", "3") for _ in range(2)))
    finished = [await client.wait(run.id) for run in runs]
    assert {run.status for run in finished} == {"completed"}
    calls = lines(tmp_path, "calls")
    assert sorted(line.split()[0] for line in calls) == sorted(run.id for run in runs)
    claims = [
        [s for s in statuses(await run_events(client, run.id)) if s == "running"] for run in runs
    ]
    assert all(len(found) == 2 for found in claims)  # claimed once; back from its one tool call


async def test_sigterm_drains_and_the_given_up_run_finishes_on_another_worker(
    client: RuntrackClient, workers: WorkerFactory, tmp_path: Path
) -> None:
    run = await client.create_run("agent")
    first = await workers("tools", "--grace", "0.5", hang=True)
    await hanging(first)
    first.send_signal(signal.SIGTERM)
    assert await first.wait() == 0
    assert len(lines(tmp_path, "exits")) == 1
    given_up = await client.get_run(run.id)
    assert given_up.status == "resuming"  # no person acted: it waits for the next worker
    await workers("tools")
    done = await client.wait(run.id)
    assert done.status == "completed"
    assert lines(tmp_path, "calls") == ["fetch https://example.org", "slow", "slow"]
    assert lines(tmp_path, "reports") == ["unfinished slow-1"]
    events = await run_events(client, run.id)
    finished = [e.payload["tool_call_id"] for e in events if e.event_type == "tool_finished"]
    assert finished == ["fetch-1", "slow-1"]
    assert statuses(events) == [
        "running", "waiting_on_tool", "running", "waiting_on_tool", "failed",
        "resuming", "running", "waiting_on_tool", "running", "completed",
    ]  # fmt: skip


async def test_sigterm_lets_a_run_end_within_the_grace_period(
    client: RuntrackClient, workers: WorkerFactory, tmp_path: Path
) -> None:
    run = await client.create_run("agent")
    worker = await workers("cancel")
    await first_event(client, run.id, lambda e: e.event_type == "message_created")
    worker.send_signal(signal.SIGTERM)
    (tmp_path / "go").touch()
    assert await worker.wait() == 0
    done = await client.get_run(run.id)
    assert (done.status, done.stop_reason) == ("completed", "end_turn")
    assert lines(tmp_path, "reports") == ["not cancelled"]


async def test_a_stalled_worker_whose_run_timed_out_writes_nothing_more(
    client: RuntrackClient, workers: WorkerFactory, tmp_path: Path
) -> None:
    """SIGSTOP past the heartbeat timeout: once it runs again, the run is no longer its own."""
    run = await client.create_run("agent")
    worker = await workers("cancel")
    await first_event(client, run.id, lambda e: e.event_type == "message_created")
    worker.send_signal(signal.SIGSTOP)
    try:
        timed_out = await client.wait(run.id)
    finally:
        worker.send_signal(signal.SIGCONT)
    assert timed_out.status == "timed_out"
    (tmp_path / "go").touch()
    worker.send_signal(signal.SIGTERM)
    assert await worker.wait() == 0
    assert lines(tmp_path, "reports") == ["lost"]
    events = await run_events(client, run.id)
    assert events[-1].event_type == "run_status_changed"
    assert events[-1].payload["to"] == "timed_out"
    assert (await client.get_run(run.id)).last_event_id == timed_out.last_event_id
