"""/metrics after known runs: run durations by status, time to first token, failed callbacks,
each counted once by the server whose writer committed it, never for a rolled-back event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from api.server.metrics import FIRST_TOKEN_BUCKETS, RUN_DURATION_BUCKETS, Metrics
from api.server.run_metrics import RunObservations
from eventstore import NewEvent, WriteContext, prepare_append
from projections import RunCommands, RunProjection
from tests.api.conftest import LiveServer, ServerFactory
from tests.api.server.test_callbacks import FAST, attempts_until_final, finished_run
from tests.conftest import StoreFactory
from tests.waiting import eventually

pytestmark = pytest.mark.anyio
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(live: LiveServer) -> Samples:
    async with live.client() as client:
        text = (await client.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def histogram(samples: Samples, name: str, **labels: str) -> dict[str, float]:
    """``count``, ``sum`` and each bucket (by its ``le``) of one histogram's series."""
    found: dict[str, float] = {}
    for (sample, pairs), value in samples.items():
        extra = dict(pairs)
        le = extra.pop("le", None)
        if extra != labels:
            continue
        if sample == f"{name}_bucket" and le is not None:
            found[le] = value
        elif sample in (f"{name}_count", f"{name}_sum"):
            found[sample.rsplit("_", 1)[1]] = value
    return found


def expected_buckets(values: list[float], bounds: tuple[float, ...]) -> dict[str, float]:
    buckets = {_le(bound): float(sum(v <= bound for v in values)) for bound in bounds}
    return buckets | {"+Inf": float(len(values))}


def _le(bound: float) -> str:
    return str(float(bound))


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def append(client: httpx.AsyncClient, run_id: str, *events: dict[str, Any]) -> None:
    answer = await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events)})
    assert answer.status_code == 201, answer.text


def status(to: str, **extra: Any) -> dict[str, Any]:
    return {"event_type": "run_status_changed", "payload": {"to": to, **extra}}


def step() -> dict[str, Any]:
    usage = {"model": "m", "prompt_tokens": 10, "completion_tokens": 2}
    return {"event_type": "step_completed", "payload": usage}


async def started(client: httpx.AsyncClient, agent: str) -> dict[str, Any]:
    run = (await client.post("/v1/runs", json={"agent_id": agent})).json()
    claim = await client.post("/v1/runs/claim", json={"worker_id": "w", "agent_id": agent})
    assert claim.json()["run"]["id"] == run["id"]
    return dict(run)


async def test_endings_and_first_steps_fill_the_histograms(server: LiveServer) -> None:
    async with server.client() as client:
        done = await started(client, "done")
        await append(client, done["id"], step())
        await append(client, done["id"], step(), status("completed"))  # a second step: no TTFT
        broken = await started(client, "broken")
        await append(client, broken["id"], status("failed", detail="boom"))
        queued = (await client.post("/v1/runs", json={"agent_id": "idle"})).json()
        await client.post(f"/v1/runs/{queued['id']}/cancel", json={})  # a command, no append
        runs = {r: (await client.get(f"/v1/runs/{r}")).json() for r in (done["id"], broken["id"])}
        events = (await client.get(f"/v1/runs/{done['id']}/events", params={"limit": 100})).json()
    samples = await scrape(server)

    completed = runs[done["id"]]["total_duration_ns"] / 1e9
    assert histogram(samples, "runtrack_run_duration_seconds", status="completed") == {
        "count": 1.0,
        "sum": pytest.approx(completed),
        **expected_buckets([completed], RUN_DURATION_BUCKETS),
    }
    assert histogram(samples, "runtrack_run_duration_seconds", status="failed")["count"] == 1
    assert histogram(samples, "runtrack_run_duration_seconds", status="cancelled")["count"] == 1
    assert histogram(samples, "runtrack_run_duration_seconds", status="timed_out") == {}

    first_step = next(e for e in events["items"] if e["event_type"] == "step_completed")
    waited = seconds(runs[done["id"]]["started_at"], first_step["created_at"])
    assert histogram(samples, "runtrack_time_to_first_token_seconds") == {
        "count": 1.0,
        "sum": pytest.approx(waited),
        **expected_buckets([waited], FIRST_TOKEN_BUCKETS),
    }


async def test_failed_callback_attempts_and_given_up_deliveries_are_counted(
    server_factory: ServerFactory, receivers: Any
) -> None:
    receiver = await receivers(failures=99)
    live = await server_factory(callback_max_attempts=2, **FAST)
    async with live.client() as client:
        run_id = await finished_run(client, receiver.url)
        attempts = await attempts_until_final(client, run_id)
    assert len(attempts) == 2
    samples = await scrape(live)
    assert samples[("runtrack_callback_attempts_failed_total", ())] == 2
    assert samples[("runtrack_callbacks_failed_total", ())] == 1


async def test_each_server_counts_the_endings_its_own_writer_committed(
    server_factory: ServerFactory,
) -> None:
    first, second = await server_factory(), await server_factory()
    async with first.client() as a, second.client() as b:
        ours = await started(a, "on-first")
        theirs = await started(b, "on-second")
        await append(a, ours["id"], status("completed"))
        await append(b, theirs["id"], status("completed"))
        await append(b, (await started(b, "on-second"))["id"], status("completed"))
    counts = []
    for live in (first, second):
        series = histogram(await scrape(live), "runtrack_run_duration_seconds", status="completed")
        counts.append(series["count"])
    assert counts == [1, 2]  # summed over the servers: each ending once


async def test_an_ending_rolled_back_with_its_unit_is_not_observed(
    store_factory: StoreFactory,
) -> None:
    metrics = Metrics()
    observations = RunObservations(metrics)
    store = store_factory(projections=[RunProjection(watcher=observations)])
    store.add_commit_listener(observations.committed)
    ending = [NewEvent("run_status_changed", {"to": "completed"})]

    def refused_after_the_ending(context: WriteContext) -> None:
        context.append(prepare_append("org", run.run_id, ending))
        raise RuntimeError("the unit fails after its append")

    def completed() -> float | None:
        labels = {"status": "completed"}
        return metrics.registry.get_sample_value("runtrack_run_duration_seconds_count", labels)

    async with store:
        commands = RunCommands(store)
        run = await commands.create("org", "a")
        await commands.claim("org", "w", agent_id="a")
        with pytest.raises(RuntimeError):
            await store.transact(refused_after_the_ending)  # folded, then rolled back
        assert completed() is None
        await store.append("org", run.run_id, ending)  # the same event id, committed
    assert completed() == 1


async def test_open_streams_counts_the_streams_open_now(server: LiveServer) -> None:
    async with server.client() as client:
        run = (await client.post("/v1/runs", json={"agent_id": "a"})).json()
        headers = {"Accept": "text/event-stream"}
        async with aconnect_sse(client, "GET", f"/v1/runs/{run['id']}/events", headers=headers):
            during = (await scrape(server))[("runtrack_open_streams", ())]
        await eventually(lambda: server.app.state.streams.open == 0)  # the server saw it go
    assert (during, (await scrape(server))[("runtrack_open_streams", ())]) == (1, 0)
