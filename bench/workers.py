"""The worker SDK against the same handler written directly on the HTTP client.

    python -m bench.workers [--quick] [--runs N] [--workers W] [--processes P] [--rounds R]

Each phase gets a fresh ``runtrack serve`` (SQLite, open mode, rate limits raised) holding
``--runs`` queued runs on as many conversations (so lanes never hold a run back), then
``--processes`` client processes with ``--workers`` workers in all (each one run at a time)
play them: 3 tool calls and 2 steps, then the end. ``sdk`` workers are ``api.client.Worker``
with that handler; ``hand`` workers claim, report and end through ``RuntrackClient`` calls
written out (the same requests a careful user writes: each tool call is a ``tool_started`` +
``waiting_on_tool`` batch, the envelope, and the step back to ``running``). Measured from the
first worker start to the last run's end: runs completed per second and the server's CPU per
run. Phases alternate (sdk, hand, hand, sdk, …) so that drift on a shared machine cancels out;
the figures are medians. The last line is ``workers:`` and ``key=value`` figures, with the
ratios ``sdk/hand`` of issue 17's targets (CPU per run <= 1.2, runs/s >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from api.client import RunContext, RuntrackClient, Worker
from bench._servers import Child, cpu_seconds, runtrack
from projections import TERMINAL

AGENT = "bench-agent"
WAIT = 5.0
"""Both kinds of worker wait for work server-side, as a careful hand-written one would."""
RAISED = ["--run-create-rate", "1000000", "--append-rate", "1000000"]


async def lookup(query: str) -> dict[str, Any]:
    return {"query": query, "hits": 3}


async def sdk_handler(ctx: RunContext) -> None:
    for n in range(3):
        await ctx.tool("lookup", {"query": f"q{n}"}, lookup)
        if n < 2:
            await ctx.step("bench-model", {"prompt_tokens": 100, "completion_tokens": 20})


async def hand_worker(client: RuntrackClient, worker_id: str, stop: asyncio.Event) -> None:
    """The handler above, on the bare client: what a user writes without the SDK."""
    while not stop.is_set():
        claim = await client.claim(worker_id, agent_id=AGENT, wait_seconds=WAIT)
        if claim is None:
            continue
        run_id = claim.run.id
        for n in range(3):
            call_id = f"lookup-{n + 1}"
            started = {"tool_call_id": call_id, "name": "lookup", "arguments": {"query": f"q{n}"}}
            await client.append(
                run_id,
                [
                    {"event_type": "tool_started", "payload": started},
                    {"event_type": "run_status_changed", "payload": {"to": "waiting_on_tool"}},
                ],
            )
            began = time.perf_counter()
            result = await lookup(f"q{n}")
            took = (time.perf_counter() - began) * 1000
            await client.record_tool_result(
                run_id, call_id, "lookup", status="success", result=result, duration_ms=took
            )
            await client.append(
                run_id, [{"event_type": "run_status_changed", "payload": {"to": "running"}}]
            )
            if n < 2:
                step = {"model": "bench-model", "prompt_tokens": 100, "completion_tokens": 20}
                await client.append(run_id, [{"event_type": "step_completed", "payload": step}])
        end = {"stop_reason": "end_turn", "detail": None}
        await client.append(run_id, [{"event_type": "run_status_changed", "payload": end}])


async def child(mode: str, url: str, count: int) -> None:
    """One client process: ``count`` workers until stdin closes."""
    async with RuntrackClient(url, timeout=60) as client:
        stop = asyncio.Event()
        if mode == "sdk":
            workers = [
                Worker(client=client, concurrency=1, wait_seconds=WAIT) for _ in range(count)
            ]
            for worker in workers:
                worker.serve(AGENT, sdk_handler)
            tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
        else:
            tasks = [
                asyncio.create_task(hand_worker(client, f"hand-{n}", stop)) for n in range(count)
            ]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()
        if mode == "sdk":
            for worker in workers:
                worker.stop()
        await asyncio.wait(tasks, timeout=10)


async def phase(mode: str, args: argparse.Namespace, folder: Path) -> tuple[float, float]:
    """Runs/s and server CPU ms per run of one phase, on a fresh server."""
    database = folder / f"{mode}-{time.monotonic_ns()}.db"
    server: Child = await runtrack(str(database), folder / "server.log", *RAISED).start()
    try:
        async with RuntrackClient(server.url) as client:
            await _create_runs(client, args.runs)
            cpu_before, began = cpu_seconds(server.pid), time.perf_counter()
            per_process = [args.workers // args.processes] * args.processes
            children = [
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "-m", "bench.workers", "--child", mode, server.url),
                    str(count),
                    stdin=asyncio.subprocess.PIPE,
                )
                for count in per_process
            ]
            await _until_done(server.url, args.runs)
            elapsed, cpu = time.perf_counter() - began, cpu_seconds(server.pid) - cpu_before
            for process in children:
                assert process.stdin is not None
                process.stdin.close()
            await asyncio.gather(*(asyncio.wait_for(p.wait(), 30) for p in children))
    finally:
        await server.stop()
    return args.runs / elapsed, 1000 * cpu / args.runs


async def _create_runs(client: RuntrackClient, runs: int) -> None:
    """The phase's runs, 20 requests at a time (the client's connection pool)."""
    for start in range(0, runs, 20):
        batch = range(start, min(start + 20, runs))
        await asyncio.gather(*(client.create_run(AGENT, conversation_id=f"c-{n}") for n in batch))


async def _until_done(url: str, runs: int) -> None:
    """Poll the run counts (a few requests a second, the same in both phases) until every run
    has ended. A run that ended otherwise than completed makes the phase's figures meaningless:
    the benchmark stops there, saying so (it used to wait for that run for ever)."""
    async with httpx.AsyncClient(base_url=url) as http:
        while True:
            counts: dict[str, int] = (await http.get("/v1/runs/stats")).json()["by_status"]
            if sum(counts.get(status.value, 0) for status in TERMINAL) >= runs:
                break
            await asyncio.sleep(0.2)
    if counts.get("completed", 0) < runs:
        raise RuntimeError(f"not every run completed: {counts}")


async def main(args: argparse.Namespace) -> None:
    figures: dict[str, list[tuple[float, float]]] = {"sdk": [], "hand": []}
    order = ["sdk", "hand", "hand", "sdk"] * args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        for mode in order[: 2 * args.rounds]:
            runs_s, cpu_ms = await phase(mode, args, Path(tmp))
            figures[mode].append((runs_s, cpu_ms))
            print(f"{mode}: {runs_s:.1f} runs/s, server {cpu_ms:.2f} ms CPU/run", flush=True)
    rate = {m: statistics.median(r for r, _ in f) for m, f in figures.items()}
    cpu = {m: statistics.median(c for _, c in f) for m, f in figures.items()}
    print(
        f"workers: sdk_runs_s={rate['sdk']:.1f} hand_runs_s={rate['hand']:.1f} "
        f"runs_s_ratio={rate['sdk'] / rate['hand']:.2f} sdk_cpu_ms={cpu['sdk']:.2f} "
        f"hand_cpu_ms={cpu['hand']:.2f} cpu_ratio={cpu['sdk'] / cpu['hand']:.2f} "
        f"workers={args.workers} processes={args.processes} runs={args.runs}"
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "COUNT"))
    args = parser.parse_args()
    if args.quick:
        args.runs, args.rounds = 100, 1
    return args


if __name__ == "__main__":
    parsed = parse()
    if parsed.child:
        mode, url, count = parsed.child
        asyncio.run(child(mode, url, int(count)))
    else:
        asyncio.run(main(parsed))
