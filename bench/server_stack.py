"""granian against uvicorn as runtrack's server, on single-event appends under wrk.

    python -m bench.server_stack [--seconds S] [--rounds N]

Four servers per round, one after the other, each on its own port and (for runtrack) its own
fresh SQLite database with an operator key: the bare Starlette route of ``bench.http_load``
(decode the body, answer 201 with JSON) and the runtrack app, each under uvicorn (as ``runtrack
serve`` runs it, with the connection limits of ``api/server/transport/``) and under granian
(ASGI interface, one worker, its default loop). wrk posts one ``custom.tick`` event per request
over 32 keep-alive connections. The last line is ``server_stack:`` with each median and the
ratios granian/uvicorn for both apps. Issue 16 keeps uvicorn unless granian is faster *and*
passes every SSE and shutdown test (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
from pathlib import Path

from starlette.applications import Starlette

from bench._servers import FAST_APPENDS, Child, free_port, runtrack
from bench.sse_channels import CONNECTIONS, prepare, wrk_rate, wrk_script

DATABASE_VARIABLE = "RUNTRACK_BENCH_STACK_DATABASE"
LABELS = ("bare/uvicorn", "bare/granian", "runtrack/uvicorn", "runtrack/granian")


def runtrack_app() -> Starlette:
    """granian's factory: the app ``runtrack serve`` builds, with the benchmark's append rate."""
    from api.server.app import create_app
    from api.server.gc_tuning import tune_collector
    from api.server.settings import Settings
    from eventstore import disable_memory_statistics

    disable_memory_statistics()  # as runtrack serve does, before any connection opens
    app = create_app(Settings(database=os.environ[DATABASE_VARIABLE], append_rate=1_000_000))
    tune_collector()
    return app


def granian(target: str, port: int, log: Path) -> Child:
    argv = ["granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--no-ws", "--log-level", "warning", target]
    return Child(argv, port, log)


async def server_for(label: str, folder: Path) -> tuple[Child, str]:
    """The server of ``label`` (not started) on a fresh database, and the token to send."""
    port = free_port()
    log = folder / f"{label.replace('/', '-')}-{port}.log"
    database = folder / f"{label.replace('/', '-')}-{port}.db"
    token, _ = await prepare(database, CONNECTIONS)
    if label == "bare/uvicorn":
        return Child(["bench.http_load", "bare", str(port)], port, log), token
    if label == "bare/granian":
        return granian("bench.http_load:bare_app", port, log), token
    if label == "runtrack/uvicorn":
        return runtrack(str(database), log, *FAST_APPENDS, deployed=True), token
    os.environ[DATABASE_VARIABLE] = str(database)
    return granian("bench.server_stack:runtrack_app", port, log), token


async def measure(label: str, folder: Path, seconds: float) -> float:
    server, token = await server_for(label, folder)
    await server.start()
    try:
        script = wrk_script(folder, token)
        await wrk_rate(server.port, script, 2)  # warm-up
        return await wrk_rate(server.port, script, seconds)
    finally:
        await server.stop()


async def measure_all(seconds: float, rounds: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {label: [] for label in LABELS}
    with tempfile.TemporaryDirectory() as name:
        for round_number in range(rounds):
            print(f"round {round_number + 1}", flush=True)
            for label in LABELS:
                rates[label].append(await measure(label, Path(name), seconds))
                print(f"  {label}: {rates[label][-1]:,.0f} req/s", flush=True)
    return {label: statistics.median(values) for label, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    median = asyncio.run(measure_all(options.seconds, options.rounds))
    figures = [f"{label}={median[label]:.0f}" for label in LABELS]
    figures.append(f"bare_granian/uvicorn={median['bare/granian'] / median['bare/uvicorn']:.2f}")
    ratio = median["runtrack/granian"] / median["runtrack/uvicorn"]
    figures.append(f"runtrack_granian/uvicorn={ratio:.2f}")
    print("server_stack: " + " ".join(figures))


if __name__ == "__main__":
    main()
