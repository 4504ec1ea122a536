"""granian against uvicorn as runtrack's server, on single-event appends under wrk.

    python -m bench.server_stack [--seconds S] [--rounds N] [--connections C]

Four servers per round, one after the other, each on its own port and (for runtrack) its own
fresh SQLite database with one admin key: the bare Starlette route of ``bench.http_append``
(decode the body, answer 201 with JSON) and the runtrack app, each under uvicorn (as ``runtrack
serve`` runs it, with the connection limits of ``api/server/transport/``) and under granian
(ASGI interface, one worker, its default loop). wrk posts one ``custom.tick`` event per request
over 32 keep-alive connections. The last line is ``server_stack:`` with each median and the
ratios granian/uvicorn for both apps. Issue 16 keeps uvicorn unless granian is faster *and*
passes every SSE and shutdown test (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from starlette.applications import Starlette

from bench.http_append import (
    RUNS,
    Server,
    free_port,
    make_key,
    post,
    wrk,
)

ROOT = Path(__file__).resolve().parent.parent
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


def bare_app() -> Starlette:
    """granian's factory for the bare route (the same app ``bench.http_append bare`` serves)."""
    import json

    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    async def append(request: Request) -> Response:
        body = json.loads(await request.body())
        reply = {"events": [{"id": 1, **e} for e in body["events"]], "run": {"status": "running"}}
        return JSONResponse(reply, status_code=201)

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/v1/runs/{run_id}/events", append, methods=["POST"]),
        Route("/readyz", ready),
    ]
    return Starlette(routes=routes)


def granian_argv(target: str, port: int) -> list[str]:
    return [
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
        target,
    ]


def server_for(label: str, folder: Path) -> tuple[Server, str]:
    """The server of ``label`` (not started) and the key its requests carry."""
    port = free_port()
    log = folder / f"{label.replace('/', '-')}.log"
    if label == "bare/uvicorn":
        return Server(label, ROOT, ["bench.http_append", "bare", str(port)], port, log), "k"
    if label == "bare/granian":
        argv = granian_argv("bench.server_stack:bare_app", port)
        return Server(label, ROOT, argv, port, log), "k"
    database = folder / f"{label.replace('/', '-')}-{port}.db"
    key = make_key(ROOT, database)
    if label == "runtrack/uvicorn":
        argv = ["api", "serve", "--database", str(database), "--port", str(port)]
        argv += ["--append-rate", "1000000"]
        return Server(label, ROOT, argv, port, log), key
    os.environ[DATABASE_VARIABLE] = str(database)
    argv = granian_argv("bench.server_stack:runtrack_app", port)
    return Server(label, ROOT, argv, port, log), key


def measure(label: str, folder: Path, seconds: float, connections: int) -> float:
    server, key = server_for(label, folder)
    server.start()
    try:
        if label.startswith("bare"):
            runs = [f"run-{n}" for n in range(RUNS)]
        else:
            runs = [str(post(server.port, "/v1/runs", '{"agent_id": "a"}', key)["id"])]
            runs += [
                str(post(server.port, "/v1/runs", '{"agent_id": "a"}', key)["id"])
                for _ in range(RUNS - 1)
            ]
        wrk(server.port, runs, key, 2, connections, folder)  # warm-up
        return wrk(server.port, runs, key, seconds, connections, folder)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    options = parser.parse_args()
    rates: dict[str, list[float]] = {label: [] for label in LABELS}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for round_number in range(options.rounds):
            print(f"round {round_number + 1}", flush=True)
            for label in LABELS:
                rate = measure(label, folder, options.seconds, options.connections)
                rates[label].append(rate)
                print(f"  {label}: {rate:,.0f} req/s", flush=True)
    median = {label: statistics.median(values) for label, values in rates.items()}
    figures = [f"{label}={median[label]:.0f}" for label in LABELS]
    figures.append(f"bare_granian/uvicorn={median['bare/granian'] / median['bare/uvicorn']:.2f}")
    ratio = median["runtrack/granian"] / median["runtrack/uvicorn"]
    figures.append(f"runtrack_granian/uvicorn={ratio:.2f}")
    print("server_stack: " + " ".join(figures))


if __name__ == "__main__":
    main()
