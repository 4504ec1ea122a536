"""Trace export throughput: how fast the exporter turns a log into OTLP spans and sends them.

  python -m bench.otel_export [--quick] [--runs N]

A SQLite log of N finished runs (--quick: 1,000; default 10,000), each 14 events: created,
running, 3 tool calls, 3 steps, a checkpoint, a journal update, completed; 7 spans a run (the
run, 3 tools, 3 steps). Two figures, each from an empty cursor:

fold      the exporter's fold and the protobuf encoding alone (no HTTP), spans/s
export    ``TraceExporter.export_pending`` to a collector in another process that reads each
          request and answers 200 (it decodes nothing), spans/s and events/s
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from api.server.telemetry import OtlpTarget, TraceExporter
from api.server.telemetry.spans import RunTrace, SpanOptions
from bench._machine import describe_machine
from eventstore import EventFilter, EventStore, NewEvent, SQLiteEventStore

ORG = "bench"
BATCH_RUNS = 50


def run_events(run: int) -> list[NewEvent]:
    """One finished run's history, the same shape for every run."""
    events = [
        NewEvent("run_created", {"agent_id": f"agent-{run % 10}"}),
        NewEvent("run_status_changed", {"to": "running"}),
    ]
    for call in range(3):
        call_id = f"call-{call}"
        events += [
            NewEvent(
                "tool_started",
                {"tool_call_id": call_id, "name": "search", "arguments": {"q": call}},
            ),
            NewEvent("tool_finished", {"tool_call_id": call_id, "name": "search", "result": "ok"}),
        ]
    step = {"model": "m", "prompt_tokens": 100, "completion_tokens": 20, "duration_ms": 12.5}
    events += [NewEvent("step_completed", step)] * 3
    events += [
        NewEvent("checkpoint_created", {"checkpoint_id": "cp", "kind": "tool_result"}),
        NewEvent("journal_updated", {"objective": "bench"}),
        NewEvent("run_status_changed", {"stop_reason": "end_turn"}),
    ]
    return events


async def fill(store: EventStore, runs: int) -> None:
    for first in range(0, runs, BATCH_RUNS):
        await asyncio.gather(
            *(
                store.append(ORG, f"run-{run}", run_events(run), conversation_id=f"conv-{run}")
                for run in range(first, min(first + BATCH_RUNS, runs))
            )
        )


async def fold_rate(store: EventStore) -> float:
    """Spans/s of the fold and the encoding alone, over the whole log."""
    options, traces = SpanOptions(), dict[str, RunTrace]()
    spans, cursor, started = 0, 0, time.perf_counter()
    while page := (await store.read(EventFilter(), after=cursor, limit=512)).events:
        batch = []
        for event in page:
            trace = traces.get(event.run_id)
            if trace is None:
                trace = traces[event.run_id] = RunTrace(event.run_id, ORG, event.run_id, options)
            batch += trace.feed(event)
            if trace.status == "completed":  # as the exporter does: only open runs are kept
                del traces[event.run_id]
        spans += len(encode_spans(batch).resource_spans[0].scope_spans[0].spans)
        cursor = page[-1].id
    return spans / (time.perf_counter() - started)


async def export_rate(store: EventStore, url: str) -> tuple[float, float]:
    exporter = TraceExporter(store, OtlpTarget(url), cursor="bench")
    started = time.perf_counter()
    try:
        await exporter.export_pending()
    finally:
        await exporter.aclose()
    elapsed = time.perf_counter() - started
    return exporter.spans_sent / elapsed, await store.head() / elapsed


def start_collector() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.otel_export", "--collector", str(port)]
    )
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"http://127.0.0.1:{port}/v1/traces"
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("the collector did not start")


def collect(port: int) -> None:
    """The collector: reads each request whole, answers 200 with an empty response."""
    import uvicorn

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


async def measure(runs: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        async with SQLiteEventStore(str(Path(folder) / "otel.db")) as store:
            await fill(store, runs)
            collector, url = start_collector()
            try:
                spans, events = await export_rate(store, url)
            finally:
                collector.kill()
                collector.wait()
            fold = await fold_rate(store)
    return (
        f"otel: runs={runs} fold_spans_s={fold:.0f} export_spans_s={spans:.0f} "
        f"export_events_s={events:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--collector", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.collector:
        collect(args.collector)
        return
    print(describe_machine(), flush=True)
    print(asyncio.run(measure(args.runs or (1_000 if args.quick else 10_000))))


if __name__ == "__main__":
    main()
