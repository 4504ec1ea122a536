"""HTTP single-event appends under wrk, against a bare Starlette route on the same stack.

    python -m bench.http_append [--quick] [--seconds S] [--rounds N] [--connections C]
                                [--base TREE] [--profile SECONDS] [--no-bare]

Each round runs, one after the other: ``runtrack serve`` from this tree, the same from
``--base`` (another checkout, e.g. a worktree of main) when given, and the bare route. Each
server gets its own fresh SQLite database with one admin key (runtrack is measured as
deployed: the key is checked on every request, limits at their defaults but the per-key append
rate), 32 runs, and wrk posting one ``custom.tick`` event per request over ``--connections``
keep-alive connections, round-robin over the runs. The bare route (``bare`` below) runs under
uvicorn with the server's own protocol and connection limits, reads and decodes the same body
and answers 201 with JSON. ``--profile`` records the first runtrack server with py-spy for
that many seconds (py-spy's collapsed stacks, kept in ``PROFILE_COPY``, printed as the top
frames). Needs ``wrk`` (apt) and, for ``--profile``, py-spy (the ``bench`` extra). The last
line is ``http_append:`` and ``key=value`` figures: the median requests/s of each and their
ratios (``runtrack/bare`` is issue 16's target, ``runtrack/base`` a before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
RUNS = 32
LOCAL = "http://127.0.0.1"
PROFILE_COPY = Path(tempfile.gettempdir()) / "http_append_profile.txt"
"""Where ``--profile`` leaves py-spy's collapsed stacks, for a closer look."""
BODY = json.dumps({"events": [{"event_type": "custom.tick", "payload": {"n": 1}}]})
WRK_SCRIPT = """
local runs = {%s}
local n = 0
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/runs/" .. runs[(n %% #runs) + 1] .. "/events")
end
response = function(status, headers, body)
  if status ~= 201 then
    io.stderr:write("status " .. status .. ": " .. body .. "\\n")
  end
end
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def python_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


@dataclass
class Server:
    """A server process on 127.0.0.1:``port``, run from the source tree ``tree``."""

    label: str
    tree: Path
    argv: list[str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.argv],
                cwd=self.tree,
                env=python_env(self.tree),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        asyncio.run(wait_ready(self.port, self.process, self.log))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    until = time.monotonic() + 60
    while time.monotonic() < until and process.poll() is None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        line = await reader.readline()
        writer.close()
        if b" 200 " in line:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server did not start; see {log}")


def make_key(tree: Path, database: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "api", "keys", "create", "--role", "admin", "--database", database],
        cwd=tree,
        env=python_env(tree),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"\brtk_[A-Za-z0-9_\-]+", out)
    if found is None:
        raise RuntimeError(f"no key in: {out!r}")
    return found.group(0)


def post(port: int, path: str, body: str, key: str) -> dict[str, object]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    connection.request("POST", path, body, headers)
    reply = connection.getresponse()
    data = reply.read()
    connection.close()
    if reply.status != 201:
        raise RuntimeError(f"POST {path}: {reply.status} {data[:300]!r}")
    decoded: dict[str, object] = json.loads(data)
    return decoded


def wrk(
    port: int, runs: list[str], key: str, seconds: float, connections: int, folder: Path
) -> float:
    script = folder / "append.lua"
    quoted = ", ".join(f'"{r}"' for r in runs)
    script.write_text(WRK_SCRIPT % (quoted, BODY, key))
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "-s", script, f"{LOCAL}:{port}"],
        capture_output=True,
        text=True,
        check=True,
    )
    if "status " in result.stderr:
        raise RuntimeError(f"refused appends: {result.stderr[:500]}")
    found = re.search(r"Requests/sec:\s+([0-9.]+)", result.stdout)
    if found is None or "Non-2xx" in result.stdout:
        raise RuntimeError(f"wrk: {result.stdout}\n{result.stderr}")
    return float(found.group(1))


def runtrack_server(label: str, tree: Path, folder: Path) -> tuple[Server, str]:
    database = folder / f"{label}.db"
    key = make_key(tree, database)
    argv = ["api", "serve", "--database", str(database), "--port", str(free_port())]
    argv += ["--append-rate", "1000000"]
    server = Server(label, tree, argv, int(argv[5]), folder / f"{label}.log")
    return server, key


def measure_runtrack(
    label: str, tree: Path, folder: Path, seconds: float, connections: int, profile: float
) -> float:
    server, key = runtrack_server(label, tree, folder)
    server.start()
    try:
        runs = [str(post(server.port, "/v1/runs", '{"agent_id": "a"}', key)["id"])]
        runs += [str(post(server.port, "/v1/runs", '{"agent_id": "a"}', key)["id"])]
        runs += [
            str(post(server.port, "/v1/runs", '{"agent_id": "a"}', key)["id"])
            for _ in range(RUNS - 2)
        ]
        wrk(server.port, runs, key, 2, connections, folder)  # warm-up
        spy = start_profile(server, folder, profile) if profile else None
        rate = wrk(server.port, runs, key, seconds, connections, folder)
        if spy is not None:
            spy.wait()
            shutil.copy(folder / "profile.txt", PROFILE_COPY)
            print_profile(PROFILE_COPY)
        return rate
    finally:
        server.stop()


def start_profile(server: Server, folder: Path, seconds: float) -> subprocess.Popen[bytes]:
    assert server.process is not None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(server.process.pid),
            "-d",
            str(int(seconds)),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            folder / "profile.txt",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def print_profile(path: Path, top: int = 25) -> None:
    """Self and inclusive shares of the frames py-spy saw (its raw collapsed stacks)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        total += int(samples)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(samples)
        own[frames[-1]] = own.get(frames[-1], 0) + int(samples)
    print(f"profile: {total} samples")
    for title, table in (("self", own), ("inclusive", inclusive)):
        print(f"  top {title}:")
        for name, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {100 * count / total:5.1f}%  {name}")


def measure_bare(folder: Path, seconds: float, connections: int) -> float:
    port = free_port()
    server = Server("bare", ROOT, ["bench.http_append", "bare", str(port)], port, folder / "b.log")
    server.start()
    try:
        runs = [f"run-{n}" for n in range(RUNS)]
        wrk(port, runs, "k", 2, connections, folder)
        return wrk(port, runs, "k", seconds, connections, folder)
    finally:
        server.stop()


def bare(port: int) -> None:
    """The ceiling: uvicorn with the server's protocol and limits, one route that decodes the
    body and answers 201 with JSON."""
    import uvicorn

    from api.server.runner import connection_limits
    from api.server.settings import Settings
    from api.server.transport.protocol import ServerConfig

    async def append(request: Request) -> Response:
        body = json.loads(await request.body())
        events = body["events"]
        reply = {"events": [{"id": 1, **e} for e in events], "run": {"status": "running"}}
        return JSONResponse(reply, status_code=201)

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/v1/runs/{run_id}/events", append, methods=["POST"]),
            Route("/readyz", ready),
        ]
    )
    settings = Settings()
    config = ServerConfig(
        app, limits=connection_limits(settings), host="127.0.0.1", port=port, log_level="warning"
    )
    uvicorn.Server(config).run()


@dataclass
class Figures:
    rates: dict[str, list[float]] = field(default_factory=dict)

    def add(self, label: str, rate: float) -> None:
        self.rates.setdefault(label, []).append(rate)
        print(f"  {label}: {rate:,.0f} req/s", flush=True)

    def median(self, label: str) -> float:
        return statistics.median(self.rates[label])


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "bare":
        bare(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--base", type=Path, help="a second checkout to compare against")
    parser.add_argument("--profile", type=float, default=0, help="py-spy the first server")
    parser.add_argument("--no-bare", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="bench-http-append-") as name:
        folder = Path(name)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}", flush=True)
            profile = args.profile if round_ == 0 else 0
            trees = [("runtrack", ROOT)] + ([("base", args.base)] if args.base else [])
            for label, tree in trees:
                rate = measure_runtrack(
                    f"{label}{round_}", tree, folder, args.seconds, args.connections, profile
                )
                figures.add(label, rate)
                profile = 0
            if not args.no_bare:
                figures.add("bare", measure_bare(folder, args.seconds, args.connections))
    print_summary(figures)


def print_summary(figures: Figures) -> None:
    parts = [f"{label}_rps={figures.median(label):.0f}" for label in figures.rates]
    ours = figures.median("runtrack")
    if "base" in figures.rates:
        parts.append(f"runtrack/base={ours / figures.median('base'):.2f}")
    if "bare" in figures.rates:
        parts.append(f"runtrack/bare={ours / figures.median('bare'):.2f}")
        if "base" in figures.rates:
            parts.append(f"base/bare={figures.median('base') / figures.median('bare'):.2f}")
    print("http_append: " + " ".join(parts))


if __name__ == "__main__":
    main()
